//! TLS on the gRPC port (rustls over ring, through tonic), optional client-certificate
//! verification, and the subject of a verified client certificate.

use anyhow::Context;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use x509_cert::der::Decode;

use super::AuthConfig;

/// How long a TLS handshake may take before the connection is dropped (a client that opens a
/// socket and sends nothing must not hold it forever).
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The TLS settings the config asks for, reading the PEM files (None: plaintext).
pub fn server_tls_config(config: &AuthConfig) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) else {
        return Ok(None);
    };
    let read = |path: &std::path::Path, flag: &str| {
        std::fs::read(path).with_context(|| format!("reading {} ({flag})", path.display()))
    };
    let cert_pem = read(cert, "--tls-cert-file")?;
    let key_pem = read(key, "--tls-key-file")?;
    check_pem(&cert_pem, "CERTIFICATE", "--tls-cert-file")?;
    check_pem(&key_pem, "PRIVATE KEY", "--tls-key-file")?;
    let mut tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert_pem, key_pem))
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(ca) = &config.tls_client_ca_file {
        let ca_pem = read(ca, "--tls-client-ca-file")?;
        check_pem(&ca_pem, "CERTIFICATE", "--tls-client-ca-file")?;
        tls = tls
            .client_ca_root(Certificate::from_pem(ca_pem))
            .client_auth_optional(config.tls_client_cert_optional);
    }
    Ok(Some(tls))
}

/// A cheap early check, so a swapped or empty file gets a message naming the flag instead of
/// a handshake error at the first connection.
fn check_pem(pem: &[u8], label: &str, flag: &str) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(pem);
    anyhow::ensure!(
        text.contains("-----BEGIN ") && text.contains(label),
        "{flag}: no PEM {label} block found"
    );
    Ok(())
}

/// The subject of a DER certificate as RFC 4514 text (`CN=deployer,O=ops`), or None when it
/// does not parse (rustls verified it already, so that does not happen in practice).
pub fn certificate_subject(der: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let subject = cert.tbs_certificate.subject.to_string();
    (!subject.is_empty()).then_some(subject)
}
