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
//!
//! The address, token and TLS options, and their client-side variables (`HOTPLANE_ADDR`,
//! `HOTPLANE_TOKEN`, `HOTPLANE_CLIENT_TLS_*`), are `hotplane ctl`'s ([`crate::ctl::connect`]),
//! made into an endpoint by the same code. The token is only sent with the drain question: the
//! health check itself is open.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use tonic::{Code, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    config::HealthArgs,
    ctl::connect::{self, Bearer, default_addr},
    pb,
};

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
    let target = connect::target(
        &args.connect,
        |tls_options| {
            Ok(match server.health_listen {
                Some(health) if !tls_options => default_addr(health, "health listen")?,
                _ => default_addr(server.listen, "listen")?,
            }
            .to_string())
        },
        args.timeout,
    )
    .map_err(|e| e.to_string())?;
    // The token only matters to the drain question: health itself is open.
    let bearer = Bearer::new(&args.connect).map_err(|e| e.to_string())?;
    let shown = target.shown.as_str();
    let service = &args.service;
    let asked = tokio::time::timeout(args.timeout, async {
        let channel = target
            .connect(args.timeout)
            .await
            .map_err(|e| e.to_string())?;
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
    if let Some(drain) = drain_reason(channel, bearer, args.timeout).await {
        reason.push_str(&format!(" ({drain})"));
    }
    Err(reason)
}

/// "draining since …: REASON" when the server says it drains; `None` when it does not, or
/// cannot say (a health-only port, a refused call, no answer in time).
async fn drain_reason(channel: Channel, bearer: Bearer, timeout: Duration) -> Option<String> {
    let answer = tokio::time::timeout(
        timeout,
        pb::drain_client::DrainClient::with_interceptor(channel, bearer)
            .get_drain_status(pb::GetDrainStatusRequest {}),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subcommand_parses_with_its_defaults_and_tls_options() {
        use crate::config::{Cli, Command};
        let cli = Cli::try_parse_args(["hotplane", "health"]).expect("parses");
        let Some(Command::Health(args)) = cli.command else {
            panic!("health: {:?}", cli.command);
        };
        assert_eq!(args.service, "");
        assert_eq!(args.connect.addr, None);
        assert_eq!(args.timeout, Duration::from_secs(3));
        assert!(!args.connect.tls);
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
        assert_eq!(args.connect.addr.as_deref(), Some("10.0.0.5:50051"));
        assert_eq!(args.timeout, Duration::from_millis(500));
        assert_eq!(
            args.connect.tls_server_name.as_deref(),
            Some("hotplane.internal")
        );
        let err = Cli::try_parse_args(["hotplane", "health", "--tls-client-cert", "c.pem"])
            .expect_err("a certificate without its key");
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }
}
