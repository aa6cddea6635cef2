//! TLS on the gRPC port (rustls over ring), optional client-certificate verification, and the
//! subject of a verified client certificate.
//!
//! hotplane runs its own TLS accept loop rather than tonic's, for one reason: certificates
//! rotate (cert-manager rewrites the files in place), and [`ServerTls::reload`] swaps the
//! rustls config that the next handshake uses, without a restart and without touching the
//! connections already open. Handshakes run in their own tasks, bounded in number and time, so
//! a client that opens a socket and sends nothing delays nobody.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use arc_swap::ArcSwap;
use rustls::{
    RootCertStore, ServerConfig,
    crypto::ring::default_provider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc},
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};
use x509_cert::der::Decode;

use super::AuthConfig;

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; further connections wait to be accepted.
const MAX_HANDSHAKES: usize = 256;
/// Connections handshaken but not yet taken by the server.
const ACCEPT_QUEUE: usize = 64;

/// Where the TLS files are (re-read from the same paths on every reload).
#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
    client_cert_optional: bool,
}

/// The TLS settings of the gRPC port: the rustls config every new handshake uses, swappable.
#[derive(Debug)]
pub struct ServerTls {
    files: Files,
    current: ArcSwap<Loaded>,
}

/// A loaded rustls config and what it serves, to report a reload's change.
#[derive(Debug)]
pub struct Loaded {
    config: Arc<ServerConfig>,
    /// The server certificate: subject, expiry and SHA-256 fingerprint (prefix).
    pub description: String,
}

impl ServerTls {
    /// Reads the certificate, key and client CA the config names (None: plaintext). Errors
    /// name the flag at fault.
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<Option<Arc<ServerTls>>> {
        let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) else {
            return Ok(None);
        };
        let files = Files {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: config.tls_client_ca_file.clone(),
            client_cert_optional: config.tls_client_cert_optional,
        };
        let current = ArcSwap::from_pointee(load(&files)?);
        Ok(Some(Arc::new(ServerTls { files, current })))
    }

    /// Re-reads the files and uses them for every new connection. On any error the running
    /// certificates stay in use, and the error says which file is wrong.
    pub fn reload(&self) -> anyhow::Result<()> {
        let loaded = self.prepare()?;
        self.install(loaded);
        Ok(())
    }

    /// Reads and checks the files without using them (a config reload checks everything
    /// before it changes anything).
    pub fn prepare(&self) -> anyhow::Result<Loaded> {
        load(&self.files)
    }

    /// Uses a prepared config for every new connection; returns the running certificate's
    /// description and the new one's.
    pub fn install(&self, loaded: Loaded) -> (String, String) {
        let new = loaded.description.clone();
        let old = self.current.swap(Arc::new(loaded));
        info!(cert = %self.files.cert.display(), old = %old.description, new = %new, "TLS certificates reloaded");
        (old.description.clone(), new)
    }

    /// The running server certificate: subject, expiry and fingerprint.
    pub fn describe(&self) -> String {
        self.current.load().description.clone()
    }

    /// Accepts TCP connections on `listener` and yields them once their TLS handshake is done,
    /// until the returned stream is dropped.
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
    ) -> ReceiverStream<io::Result<TlsStream<TcpStream>>> {
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        tokio::spawn(async move {
            let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
            loop {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                let accepted = tokio::select! {
                    r = listener.accept() => r,
                    _ = tx.closed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        // Per-connection errors (the peer reset before accept, fd limits):
                        // keep accepting; a short pause avoids spinning on EMFILE.
                        warn!(error = %e, "accepting a TLS connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = TlsAcceptor::from(Arc::clone(&self.current.load().config));
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(tls)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

/// Builds the rustls server config from the files: the certificate chain and key, client
/// certificates verified against the CA when one is set, HTTP/2 by ALPN (gRPC needs it).
fn load(files: &Files) -> anyhow::Result<Loaded> {
    let certs = read_certs(&files.cert, "--tls-cert-file")?;
    let description = describe(&certs[0]);
    let key_pem = read(&files.key, "--tls-key-file")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow::anyhow!(
            "--tls-key-file {}: no PEM private key ({e})",
            files.key.display()
        )
    })?;
    let provider = Arc::new(default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca, "--tls-client-ca-file")? {
                roots.add(cert).with_context(|| {
                    format!(
                        "--tls-client-ca-file {}: not a CA certificate",
                        ca.display()
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if files.client_cert_optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .with_context(|| format!("--tls-client-ca-file {}", ca.display()))?,
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "--tls-cert-file {} and --tls-key-file {} do not make a usable certificate (does the key match?)",
            files.cert.display(),
            files.key.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        description,
    })
}

/// `CN=localhost, expires 2026-11-25T12:00:00Z, sha256 1a2b3c4d5e6f7a8b`: enough to tell two
/// certificates apart in a reload answer and a log line.
fn describe(cert: &CertificateDer<'_>) -> String {
    use sha2::{Digest, Sha256};
    let fingerprint = hex::encode(&Sha256::digest(cert.as_ref())[..8]);
    match x509_cert::Certificate::from_der(cert.as_ref()) {
        Ok(c) => {
            let tbs = &c.tbs_certificate;
            let secs = tbs.validity.not_after.to_unix_duration().as_secs();
            let expires = i64::try_from(secs)
                .ok()
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                .map_or_else(String::new, |t| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                });
            format!("{}, expires {expires}, sha256 {fingerprint}", tbs.subject)
        }
        Err(_) => format!("sha256 {fingerprint}"),
    }
}

fn read(path: &Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {} ({flag})", path.display()))
}

fn read_certs(path: &Path, flag: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, flag)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{flag} {}: bad PEM ({e})", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{flag} {}: no PEM certificate found",
        path.display()
    );
    Ok(certs)
}

/// The subject of a DER certificate as RFC 4514 text (`CN=deployer,O=ops`), or None when it
/// does not parse (rustls verified it already, so that does not happen in practice).
pub fn certificate_subject(der: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let subject = cert.tbs_certificate.subject.to_string();
    (!subject.is_empty()).then_some(subject)
}
