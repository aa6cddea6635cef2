//! Reaching a running server, for every client command (`hotplane ctl` and `hotplane health`):
//! the address, the bearer token and the TLS options, each with a flag and an environment
//! variable, turned into one tonic [`Endpoint`] and a [`Bearer`] interceptor.
//!
//! The client's variables are named apart from the server's (`HOTPLANE_ADDR`, `HOTPLANE_TOKEN`,
//! `HOTPLANE_CLIENT_TLS_*`, not `HOTPLANE_LISTEN` or `HOTPLANE_TLS_*`), so a client run inside
//! the server's container or pod never mistakes the server's own certificate for a CA.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use clap::Args;
use tonic::{
    Request, Status,
    metadata::{Ascii, MetadataValue},
    service::Interceptor,
    transport::{Certificate, ClientTlsConfig, Endpoint, Identity},
};

/// The system CA bundle read by `--tls` without `--tls-ca` (Debian's path), unless
/// `SSL_CERT_FILE` names another.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where the server is and how to talk to it. Every option is global: it may follow the
/// subcommand (`hotplane ctl status --addr …`).
#[derive(Clone, Default, Args, PartialEq, Eq)]
#[command(next_help_heading = "Connection options")]
pub struct ConnectArgs {
    /// Server address, `HOST:PORT` (or an `http://` / `https://` URL). Default: the server's
    /// `--listen` / `HOTPLANE_LISTEN` (`hotplane health`: its plaintext `--health-listen` /
    /// `HOTPLANE_HEALTH_LISTEN` when set and no TLS option is given), a wildcard host (0.0.0.0,
    /// ::) becoming loopback; so 127.0.0.1:50051 when neither is set.
    #[arg(long, env = "HOTPLANE_ADDR", value_name = "ADDR", global = true)]
    pub addr: Option<String>,

    /// Bearer token sent as `authorization: Bearer TOKEN` on every call (a static token of the
    /// server's tokens file, or a JWT). Prefer the variable: a flag shows in `ps`.
    #[arg(
        long,
        env = "HOTPLANE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        global = true
    )]
    pub token: Option<String>,

    /// Connect with TLS, trusting the system's CA bundle (`SSL_CERT_FILE`, else
    /// /etc/ssl/certs/ca-certificates.crt) unless `--tls-ca` is given. Implied by every other
    /// `--tls-*` option and by an `https://` address.
    #[arg(long, env = "HOTPLANE_CLIENT_TLS", global = true)]
    pub tls: bool,

    /// TLS: PEM CA certificate(s) the server's certificate must chain to.
    #[arg(
        long,
        env = "HOTPLANE_CLIENT_TLS_CA",
        value_name = "FILE",
        global = true
    )]
    pub tls_ca: Option<PathBuf>,

    /// mTLS: PEM client certificate (chain) to present; needs `--tls-client-key`.
    #[arg(
        long,
        env = "HOTPLANE_CLIENT_TLS_CERT",
        value_name = "FILE",
        requires = "tls_client_key",
        global = true
    )]
    pub tls_client_cert: Option<PathBuf>,

    /// mTLS: PEM private key of `--tls-client-cert`.
    #[arg(
        long,
        env = "HOTPLANE_CLIENT_TLS_KEY",
        value_name = "FILE",
        requires = "tls_client_cert",
        global = true
    )]
    pub tls_client_key: Option<PathBuf>,

    /// TLS: the name the server's certificate must carry, when it is not the address's host
    /// (e.g. `localhost` while connecting to 127.0.0.1).
    #[arg(
        long,
        env = "HOTPLANE_CLIENT_TLS_SERVER_NAME",
        value_name = "NAME",
        global = true
    )]
    pub tls_server_name: Option<String>,
}

impl std::fmt::Debug for ConnectArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectArgs")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("tls_ca", &self.tls_ca)
            .field("tls_client_cert", &self.tls_client_cert)
            .field("tls_client_key", &self.tls_client_key)
            .field("tls_server_name", &self.tls_server_name)
            .finish()
    }
}

impl ConnectArgs {
    /// Whether a TLS option was given (an `https://` address also means TLS).
    pub fn tls_options(&self) -> bool {
        self.tls
            || self.tls_ca.is_some()
            || self.tls_client_cert.is_some()
            || self.tls_server_name.is_some()
    }
}

/// Why no endpoint could be made or reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The options are wrong (a bad address, an unreadable file, a token that is not ASCII):
    /// trying again will not help.
    #[error("{0}")]
    Setup(String),
    /// Nothing answered (refused, a TLS handshake failure, no answer in time).
    #[error("{0}")]
    Unreachable(String),
}

/// An endpoint to connect to, and the address as a person would write it (for messages).
#[derive(Debug, Clone)]
pub struct Target {
    /// The configured endpoint (TLS, connect timeout).
    pub endpoint: Endpoint,
    /// `HOST:PORT`, without a scheme.
    pub shown: String,
}

impl Target {
    /// Connects within `timeout`.
    pub async fn connect(
        &self,
        timeout: Duration,
    ) -> Result<tonic::transport::Channel, ConnectError> {
        match tokio::time::timeout(timeout, self.endpoint.connect()).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(e)) => Err(ConnectError::Unreachable(format!(
                "cannot connect to {}: {}",
                self.shown,
                chain(&e)
            ))),
            Err(_) => Err(ConnectError::Unreachable(format!(
                "no answer from {} within {}",
                self.shown,
                humantime::format_duration(timeout)
            ))),
        }
    }
}

/// The endpoint `args` name; `default_addr` is used when no `--addr` is given (it is told
/// whether a TLS option was).
pub fn target(
    args: &ConnectArgs,
    default_addr: impl FnOnce(bool) -> Result<String, String>,
    connect_timeout: Duration,
) -> Result<Target, ConnectError> {
    let tls_options = args.tls_options();
    let addr = match &args.addr {
        Some(addr) => addr.trim().to_owned(),
        None => default_addr(tls_options).map_err(ConnectError::Setup)?,
    };
    let tls = tls_options || addr.starts_with("https://");
    let uri = match addr.split_once("://") {
        Some(("http", _)) if tls => {
            return Err(ConnectError::Setup(format!(
                "{addr}: an http:// address with TLS options; use https:// or HOST:PORT"
            )));
        }
        Some(("http" | "https", _)) => addr.clone(),
        Some((scheme, _)) => {
            return Err(ConnectError::Setup(format!(
                "{addr}: unsupported scheme {scheme:?} (HOST:PORT, http:// or https://)"
            )));
        }
        None if tls => format!("https://{addr}"),
        None => format!("http://{addr}"),
    };
    let shown = addr
        .split_once("://")
        .map_or(addr.as_str(), |(_, rest)| rest)
        .trim_end_matches('/')
        .to_owned();
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|e| ConnectError::Setup(format!("bad address {addr:?}: {}", chain(&e))))?
        .connect_timeout(connect_timeout);
    if tls {
        endpoint = endpoint
            .tls_config(tls_config(args)?)
            .map_err(|e| ConnectError::Setup(format!("TLS settings: {}", chain(&e))))?;
    }
    Ok(Target { endpoint, shown })
}

/// The address a client uses when `--addr` is not given: one the server listens on (`what`
/// names the setting, for the message), loopback in place of a wildcard.
pub fn default_addr(listen: SocketAddr, what: &str) -> Result<SocketAddr, String> {
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

fn tls_config(args: &ConnectArgs) -> Result<ClientTlsConfig, ConnectError> {
    let read = |path: &Path, what: &str| {
        std::fs::read(path)
            .map_err(|e| ConnectError::Setup(format!("cannot read {what} {}: {e}", path.display())))
    };
    let ca = match &args.tls_ca {
        Some(path) => read(path, "--tls-ca")?,
        None => {
            let path = std::env::var_os("SSL_CERT_FILE")
                .map(PathBuf::from)
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

/// Adds `authorization: Bearer TOKEN` to every request when a token is configured.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// The interceptor for `args.token`; a token that cannot be a header value is a setup error.
    pub fn new(args: &ConnectArgs) -> Result<Bearer, ConnectError> {
        match args.token.as_deref().map(str::trim) {
            None | Some("") => Ok(Bearer(None)),
            Some(token) => format!("Bearer {token}")
                .parse()
                .map(|v| Bearer(Some(v)))
                .map_err(|_| {
                    ConnectError::Setup(
                        "--token / HOTPLANE_TOKEN: not a valid header value (printable ASCII only)"
                            .into(),
                    )
                }),
        }
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}

/// An error and its sources on one line, without repeating a message its source also gives.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
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
        let err = addr("127.0.0.1:0").expect_err("port 0");
        assert!(err.contains("--addr"), "{err}");
    }

    #[test]
    fn an_error_chain_is_one_line_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(chain(&io), "refused");
    }

    #[test]
    fn a_token_is_redacted_and_must_be_a_header_value() {
        let args = ConnectArgs {
            token: Some("s3cret".into()),
            ..Default::default()
        };
        assert!(!format!("{args:?}").contains("s3cret"));
        assert!(Bearer::new(&args).is_ok());
        let bad = ConnectArgs {
            token: Some("line\nbreak".into()),
            ..Default::default()
        };
        assert!(matches!(Bearer::new(&bad), Err(ConnectError::Setup(_))));
    }

    #[test]
    fn addresses_schemes_and_tls_options() {
        let t = |addr: &str, tls: bool| {
            let args = ConnectArgs {
                addr: Some(addr.into()),
                tls,
                tls_ca: tls.then(|| "/dev/null".into()),
                ..Default::default()
            };
            target(&args, |_| unreachable!(), Duration::from_secs(1)).map(|t| t.shown)
        };
        assert_eq!(t("127.0.0.1:1", false).as_deref(), Ok("127.0.0.1:1"));
        assert_eq!(t("http://h:1/", false).as_deref(), Ok("h:1"));
        assert!(matches!(t("ftp://h:1", false), Err(ConnectError::Setup(_))));
        assert!(matches!(t("http://h:1", true), Err(ConnectError::Setup(_))));
    }
}
