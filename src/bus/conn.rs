//! One Redis connection generation: the URL, where it leads ([`Target`]: one Redis, the
//! master Sentinel names, or a cluster), and the command connection ([`Link`]).
//! `Reload(TARGET_BUS)` replaces it as a whole; whoever loaded the old one finishes with it.
//!
//! TLS follows the scheme alone (`rediss://`, `rediss+sentinel://`, `rediss+cluster://`), to
//! every server the URL leads to; `--redis-ca-file` replaces the system's roots for all of them,
//! and is refused with a plaintext scheme rather than ignored: a URL never gets less TLS than
//! its configuration suggests.

use std::{path::Path, time::Duration};

use super::{
    BusError,
    cluster::{self, ClusterUrl, Nodes},
    link::Link,
    sentinel::{self, Resolver, SentinelUrl},
    target::Target,
};
use crate::store::redact_url;

/// One Redis connection generation: the URL, its target, and the command connection
/// (publishing, fleet heartbeats and reads).
pub(super) struct Conn {
    /// The URL, with credentials: never printed (see `redacted`).
    pub(super) url: String,
    /// Where subscriptions and the link connect.
    pub(super) target: Target,
    /// The command connection.
    pub(super) link: Link,
}

impl Conn {
    pub(super) fn new(
        url: &str,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Conn, BusError> {
        // TLS uses rustls, which needs a process-wide crypto provider. Installing fails only
        // when one is installed already, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let target = if cluster::is_cluster(url) {
            let invalid = |reason: String| BusError::Url {
                url: ClusterUrl::parse(url).map_or_else(|_| redact_url(url), |u| u.redacted()),
                reason,
            };
            let parsed = ClusterUrl::parse(url).map_err(&invalid)?;
            if ca_file.is_some() && !parsed.tls {
                return Err(invalid(format!(
                    "--redis-ca-file is for TLS: use {}:// to reach the cluster over TLS",
                    cluster::TLS_SCHEME
                )));
            }
            Target::Cluster(Nodes::new(&parsed, ca_certs(ca_file)?).map_err(invalid)?)
        } else if sentinel::is_sentinel(url) {
            let invalid = |reason: String| BusError::Url {
                url: sentinel::SentinelUrl::parse(url)
                    .map_or_else(|_| redact_url(url), |u| u.redacted()),
                reason,
            };
            let parsed = SentinelUrl::parse(url).map_err(&invalid)?;
            if ca_file.is_some() && !parsed.tls {
                return Err(invalid(format!(
                    "--redis-ca-file is for TLS: use {}:// to reach the sentinels and the master \
                     over TLS",
                    sentinel::TLS_SCHEME
                )));
            }
            Target::Sentinel(Resolver::new(parsed, ca_certs(ca_file)?).map_err(invalid)?)
        } else {
            Target::Fixed(client(url, ca_file)?)
        };
        Ok(Conn {
            url: url.to_owned(),
            link: Link::new(target.clone(), timeout),
            target,
        })
    }

    /// The URL without password.
    pub(super) fn redacted(&self) -> String {
        if let (true, Ok(u)) = (cluster::is_cluster(&self.url), ClusterUrl::parse(&self.url)) {
            return u.redacted();
        }
        match SentinelUrl::parse(&self.url) {
            Ok(u) if sentinel::is_sentinel(&self.url) => u.redacted(),
            _ => redact_url(&self.url),
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("url", &self.redacted())
            .finish_non_exhaustive()
    }
}

/// The roots to trust instead of the system's: the PEM file `ca_file`, when given.
fn ca_certs(ca_file: Option<&Path>) -> Result<Option<redis::TlsCertificates>, BusError> {
    let Some(path) = ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|source| BusError::CaFile {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Some(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// A Redis client for `url`, trusting `ca_file` for `rediss://` when given.
fn client(url: &str, ca_file: Option<&Path>) -> Result<redis::Client, BusError> {
    match ca_certs(ca_file)? {
        None => redis::Client::open(url),
        Some(certs) => redis::Client::build_with_tls(url, certs),
    }
    .map_err(|source| BusError::Client {
        url: redact_url(url),
        source,
    })
}
