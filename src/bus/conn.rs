//! One Redis connection generation: the URL, a client for subscriptions, and the command
//! connection ([`Link`]). `Reload(TARGET_BUS)` replaces it as a whole; whoever loaded the old
//! one finishes with it.

use std::{path::Path, time::Duration};

use super::{BusError, link::Link};
use crate::store::redact_url;

/// One Redis connection generation: the URL, its client, and the command connection (publishing,
/// fleet heartbeats and reads).
pub(super) struct Conn {
    /// The URL, with credentials: never printed (see `redacted`).
    pub(super) url: String,
    /// Opens subscriptions.
    pub(super) client: redis::Client,
    /// The command connection.
    pub(super) link: Link,
}

impl Conn {
    pub(super) fn new(
        url: &str,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Conn, BusError> {
        let client = client(url, ca_file)?;
        Ok(Conn {
            url: url.to_owned(),
            link: Link::new(client.clone(), timeout),
            client,
        })
    }

    /// The URL without password.
    pub(super) fn redacted(&self) -> String {
        redact_url(&self.url)
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("url", &self.redacted())
            .finish_non_exhaustive()
    }
}

/// A Redis client for `url`, trusting `ca_file` for `rediss://` when given.
fn client(url: &str, ca_file: Option<&Path>) -> Result<redis::Client, BusError> {
    // rediss:// uses rustls, which needs a process-wide crypto provider. Installing fails
    // only when one is installed already, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match ca_file {
        None => redis::Client::open(url),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|source| BusError::CaFile {
                path: path.display().to_string(),
                source,
            })?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            redis::Client::build_with_tls(url, certs)
        }
    }
    .map_err(|source| BusError::Client {
        url: redact_url(url),
        source,
    })
}
