//! Static credentials from the tokens file: bearer tokens kept only as SHA-256 hashes (the file
//! holds no secret worth stealing), compared in constant time, and the scopes of client
//! certificate subjects. The file is read at start and again on every config reload; a reload
//! reads and checks it whole before anything changes (see [`super::Authenticator`]).

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Scope, Scopes};

/// The tokens file (JSON).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// Static bearer tokens.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    /// Scopes of mTLS client certificates, by subject.
    #[serde(default)]
    pub clients: Vec<ClientEntry>,
}

/// One static token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The caller's name (logs, audit trail, rate limits).
    pub name: String,
    /// Lower- or upper-case hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
    /// `read` and/or `admin`.
    pub scopes: Vec<String>,
}

/// The scopes of one client-certificate subject.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// The subject as hotplane prints it (RFC 4514, e.g. `CN=deployer,O=ops`).
    pub subject: String,
    /// `read` and/or `admin`.
    pub scopes: Vec<String>,
}

/// The SHA-256 hex of a token, as the tokens file stores it.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Loaded static credentials.
#[derive(Debug, Default)]
pub(super) struct Credentials {
    /// Name, SHA-256 of the token, scopes.
    tokens: Vec<(String, [u8; 32], Scopes)>,
    /// Client-certificate subject, scopes.
    clients: Vec<(String, Scopes)>,
    /// First 8 hex digits of the file's SHA-256 (empty without a file): tells a reload's
    /// answer that the file changed even when the names did not (a rotated token).
    fingerprint: String,
}

impl Credentials {
    /// Reads and checks the tokens file.
    pub(super) fn load(path: &Path) -> anyhow::Result<Credentials> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading the tokens file {} (--auth-tokens-file)",
                path.display()
            )
        })?;
        let file: TokenFile = serde_json::from_str(&text).with_context(|| {
            format!(
                "parsing the tokens file {} (--auth-tokens-file): expected JSON {{\"tokens\": [{{\"name\", \"sha256\", \"scopes\"}}], \"clients\": [{{\"subject\", \"scopes\"}}]}}",
                path.display()
            )
        })?;
        let mut credentials = Credentials::from_file(file)
            .with_context(|| format!("checking the tokens file {}", path.display()))?;
        credentials.fingerprint = hex::encode(&Sha256::digest(text.as_bytes())[..4]);
        Ok(credentials)
    }

    /// What a reload's answer shows of these credentials: counts, names and the file's
    /// fingerprint. Names are no secret (logs and the audit trail show them).
    pub(super) fn describe(&self) -> String {
        let names: Vec<&str> = self.tokens.iter().map(|(n, ..)| n.as_str()).collect();
        format!(
            "{} token(s) [{}], {} client subject(s), sha256 {}",
            self.tokens.len(),
            names.join(", "),
            self.clients.len(),
            self.fingerprint
        )
    }

    /// Checks entries: names, hashes and scopes well-formed, no name or hash twice.
    pub(super) fn from_file(file: TokenFile) -> anyhow::Result<Credentials> {
        let mut out = Credentials::default();
        for (i, t) in file.tokens.into_iter().enumerate() {
            if t.name.trim().is_empty() {
                bail!("tokens[{i}]: the name must not be empty");
            }
            let mut hash = [0u8; 32];
            if hex::decode_to_slice(t.sha256.trim(), &mut hash).is_err() {
                bail!(
                    "tokens[{i}] ({}): sha256 must be 64 hex digits (the token's SHA-256, not the token)",
                    t.name
                );
            }
            let scopes =
                parse_scopes(&t.scopes).with_context(|| format!("tokens[{i}] ({})", t.name))?;
            if out
                .tokens
                .iter()
                .any(|(n, h, _)| *n == t.name || *h == hash)
            {
                bail!(
                    "tokens[{i}] ({}): the name or the hash is listed twice",
                    t.name
                );
            }
            out.tokens.push((t.name, hash, scopes));
        }
        for (i, c) in file.clients.into_iter().enumerate() {
            if c.subject.trim().is_empty() {
                bail!("clients[{i}]: the subject must not be empty");
            }
            let scopes =
                parse_scopes(&c.scopes).with_context(|| format!("clients[{i}] ({})", c.subject))?;
            out.clients.push((c.subject, scopes));
        }
        Ok(out)
    }

    /// Whether no token and no client subject is configured.
    pub(super) fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.clients.is_empty()
    }

    /// The name and scopes of the token, if configured. Compares the token's hash with every
    /// configured hash in constant time, without stopping at a match, so timing tells nothing
    /// about which or how many bytes matched.
    pub(super) fn token(&self, token: &str) -> Option<(String, Scopes)> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (name, expected, scopes) in &self.tokens {
            if bool::from(expected.ct_eq(&hash)) {
                found = Some((name, *scopes));
            }
        }
        found.map(|(name, scopes)| (name.clone(), scopes))
    }

    /// The scopes the file grants a client-certificate subject.
    pub(super) fn certificate(&self, subject: &str) -> Option<Scopes> {
        self.clients
            .iter()
            .find(|(s, _)| s == subject)
            .map(|(_, scopes)| *scopes)
    }
}

fn parse_scopes(names: &[String]) -> anyhow::Result<Scopes> {
    if names.is_empty() {
        bail!("scopes must list read and/or admin");
    }
    if let Some(bad) = names.iter().find(|n| Scope::parse(n).is_none()) {
        bail!("unknown scope {bad:?}: use read, admin");
    }
    Ok(Scopes::from_names(names.iter().map(String::as_str)))
}
