//! `hotplane health`: a one-shot `grpc.health.v1.Health/Check` against a running server, for
//! exec probes (Kubernetes `exec:`, which unlike the native `grpc:` probe can speak TLS) and
//! Docker's `HEALTHCHECK`.
//!
//! Exit status 0 when the service is SERVING, 1 otherwise (NOT_SERVING, an unknown service, no
//! connection, no answer in time, a TLS failure); clap's usage errors keep their status 2. One
//! line says why: on stdout when SERVING, on stderr otherwise (Docker keeps both in the health
//! log). When the answer is NOT_SERVING and the server is draining, the drain's reason is added
//! (asked of `Drain/GetDrainStatus`, best effort: a health-only port or an auth refusal just
//! leaves it out).
//!
//! It reads no config file and opens no database. Of the server's settings only its addresses
//! are used, for the default `--addr`: the plaintext health-only port (`--health-listen` /
//! `HOTPLANE_HEALTH_LISTEN`, which exists only beside TLS) when it is set and no TLS option is
//! given, else `--listen` / `HOTPLANE_LISTEN`; a wildcard host (0.0.0.0, ::) becomes loopback.
//! So inside the server's container or pod, where the probe sees the server's environment, it
//! finds the server with no flags, TLS or not. A config file's `server.listen` is not read: a
//! server moved there needs `--addr`. The server's TLS files are not used (its certificate is
//! not a CA): the TLS port needs `--tls-ca` (or the system's CA bundle with `--tls`).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::ExitCode,
    time::Duration,
};

use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{config::HealthArgs, pb};

/// The system CA bundle read by `--tls` without `--tls-ca` (Debian's path), unless
/// `SSL_CERT_FILE` names another.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The server addresses the default `--addr` is taken from.
#[derive(Debug, Clone, Copy)]
pub struct ServerAddrs {
    /// `--listen` / `HOTPLANE_LISTEN`.
    pub listen: SocketAddr,
    /// `--health-listen` / `HOTPLANE_HEALTH_LISTEN`.
    pub health_listen: Option<SocketAddr>,
}

/// Runs the probe, prints its one line, and returns the exit status.
pub async fn run(args: &HealthArgs, server: ServerAddrs) -> ExitCode {
    match check(args, server).await {
        Ok(line) => {
            println!("hotplane health: {line}");
            ExitCode::SUCCESS
        }
        Err(line) => {
            eprintln!("hotplane health: {line}");
            ExitCode::from(1)
        }
    }
}

/// `Ok(line)` when SERVING, `Err(reason)` otherwise.
pub async fn check(args: &HealthArgs, server: ServerAddrs) -> Result<String, String> {
    let tls_options = args.tls
        || args.tls_ca.is_some()
        || args.tls_client_cert.is_some()
        || args.tls_server_name.is_some();
    let addr = match &args.addr {
        Some(addr) => addr.trim().to_owned(),
        None => match server.health_listen {
            Some(health) if !tls_options => default_addr(health, "health listen")?.to_string(),
            _ => default_addr(server.listen, "listen")?.to_string(),
        },
    };
    let tls = tls_options || addr.starts_with("https://");
    let uri = match addr.split_once("://") {
        Some(("http", _)) if tls => {
            return Err(format!(
                "{addr}: an http:// address with TLS options; use https:// or HOST:PORT"
            ));
        }
        Some(("http" | "https", _)) => addr.clone(),
        Some((scheme, _)) => {
            return Err(format!(
                "{addr}: unsupported scheme {scheme:?} (HOST:PORT, http:// or https://)"
            ));
        }
        None if tls => format!("https://{addr}"),
        None => format!("http://{addr}"),
    };
    let shown = addr
        .split_once("://")
        .map_or(addr.as_str(), |(_, rest)| rest)
        .trim_end_matches('/');
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|e| format!("bad address {addr:?}: {}", chain(&e)))?
        .connect_timeout(args.timeout);
    if tls {
        endpoint = endpoint
            .tls_config(tls_config(args)?)
            .map_err(|e| format!("TLS settings: {}", chain(&e)))?;
    }
    let service = &args.service;
    let asked = tokio::time::timeout(args.timeout, async {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("cannot connect to {shown}: {}", chain(&e)))?;
        let answer = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: service.clone(),
            })
            .await;
        Ok::<_, String>((channel, answer))
    })
    .await;
    let (channel, answer) = match asked {
        Ok(Ok(asked)) => asked,
        Ok(Err(reason)) => return Err(reason),
        Err(_) => {
            return Err(format!(
                "no answer from {shown} within {}",
                humantime::format_duration(args.timeout)
            ));
        }
    };
    let status = match answer {
        Ok(answer) => answer.into_inner().status,
        Err(s) if s.code() == Code::NotFound => {
            return Err(format!(
                "{shown} does not know the service {service:?} (NOT_FOUND)"
            ));
        }
        Err(s) => {
            return Err(format!(
                "{shown} answered the health check with {:?}: {}",
                s.code(),
                s.message()
            ));
        }
    };
    let named = ServingStatus::try_from(status)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| format!("status {status}"));
    if status == ServingStatus::Serving as i32 {
        return Ok(format!("{shown} service {service:?} is SERVING"));
    }
    let mut reason = format!("{shown} service {service:?} is {named}");
    if let Some(drain) = drain_reason(channel, args.timeout).await {
        reason.push_str(&format!(" ({drain})"));
    }
    Err(reason)
}

/// The address to probe when `--addr` is not given: one the server listens on (`what`), loopback
/// in place of a wildcard.
fn default_addr(listen: SocketAddr, what: &str) -> Result<SocketAddr, String> {
    if listen.port() == 0 {
        return Err(format!(
            "the {what} address {listen} has port 0 (any free port), so the server's port is unknown: pass --addr"
        ));
    }
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(SocketAddr::new(ip, listen.port()))
}

fn tls_config(args: &HealthArgs) -> Result<ClientTlsConfig, String> {
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
    };
    let ca = match &args.tls_ca {
        Some(path) => read(path, "--tls-ca")?,
        None => {
            let path = std::env::var_os("SSL_CERT_FILE")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| SYSTEM_CA_BUNDLE.into());
            read(&path, "the system CA bundle (set --tls-ca)")?
        }
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let (Some(cert), Some(key)) = (&args.tls_client_cert, &args.tls_client_key) {
        tls = tls.identity(Identity::from_pem(
            read(cert, "--tls-client-cert")?,
            read(key, "--tls-client-key")?,
        ));
    }
    if let Some(name) = &args.tls_server_name {
        tls = tls.domain_name(name.clone());
    }
    Ok(tls)
}

/// "draining since …: REASON" when the server says it drains; `None` when it does not, or
/// cannot say (a health-only port, a refused call, no answer in time).
async fn drain_reason(channel: Channel, timeout: Duration) -> Option<String> {
    let answer = tokio::time::timeout(
        timeout,
        pb::drain_client::DrainClient::new(channel).get_drain_status(pb::GetDrainStatusRequest {}),
    )
    .await
    .ok()?
    .ok()?;
    let status = answer.into_inner().status?;
    if !status.draining {
        return None;
    }
    let reason = if status.reason.is_empty() {
        "no reason given".to_owned()
    } else {
        format!("{:?}", status.reason)
    };
    Some(format!(
        "draining: {reason}, {} request(s) and {} stream(s) still running",
        status.in_flight_requests, status.open_streams
    ))
}

/// An error and its sources on one line, without repeating a message its source also gives.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_address_follows_the_listen_address_with_loopback_for_a_wildcard() {
        let addr =
            |s: &str| default_addr(s.parse().expect("addr"), "listen").map(|a| a.to_string());
        assert_eq!(addr("0.0.0.0:50051").as_deref(), Ok("127.0.0.1:50051"));
        assert_eq!(addr("[::]:7000").as_deref(), Ok("[::1]:7000"));
        assert_eq!(addr("10.1.2.3:9000").as_deref(), Ok("10.1.2.3:9000"));
        assert_eq!(addr("127.0.0.1:50051").as_deref(), Ok("127.0.0.1:50051"));
        let err = addr("127.0.0.1:0").expect_err("port 0");
        assert!(err.contains("--addr"), "{err}");
    }

    #[test]
    fn the_subcommand_parses_with_its_defaults_and_tls_options() {
        use crate::config::{Cli, Command};
        let cli = Cli::try_parse_args(["hotplane", "health"]).expect("parses");
        let Some(Command::Health(args)) = cli.command else {
            panic!("health: {:?}", cli.command);
        };
        assert_eq!(args.service, "");
        assert_eq!(args.addr, None);
        assert_eq!(args.timeout, Duration::from_secs(3));
        assert!(!args.tls);
        let cli = Cli::try_parse_args([
            "hotplane",
            "health",
            "--service",
            "hotplane.v1.Patterns",
            "--addr",
            "10.0.0.5:50051",
            "--tls-ca",
            "ca.pem",
            "--tls-client-cert",
            "c.pem",
            "--tls-client-key",
            "c.key",
            "--tls-server-name",
            "hotplane.internal",
            "--timeout",
            "500ms",
        ])
        .expect("parses");
        let Some(Command::Health(args)) = cli.command else {
            panic!("health: {:?}", cli.command);
        };
        assert_eq!(args.service, "hotplane.v1.Patterns");
        assert_eq!(args.addr.as_deref(), Some("10.0.0.5:50051"));
        assert_eq!(args.timeout, Duration::from_millis(500));
        assert_eq!(args.tls_server_name.as_deref(), Some("hotplane.internal"));
        let err = Cli::try_parse_args(["hotplane", "health", "--tls-client-cert", "c.pem"])
            .expect_err("a certificate without its key");
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn an_error_chain_is_one_line_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(chain(&io), "refused");
    }
}
