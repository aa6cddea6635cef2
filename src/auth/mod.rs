//! Who may call what: authentication (static bearer tokens, JWTs, mTLS client certificates),
//! the `read` / `admin` scopes of every RPC, the loopback-only default when nothing is
//! configured, per-caller rate limits on state-changing RPCs, and the TLS settings.
//!
//! Everything is decided in one tower layer ([`AuthLayer`]) around every service, never in
//! handlers, so an RPC added later cannot forget its check: a method this module does not know
//! requires `admin`. The layer puts a [`Caller`] into the request's extensions; handlers, the
//! audit trail and logs read the caller's name from there. This module never logs or returns a
//! presented credential, and keeps only hashes of static tokens.

mod config;
mod jwt;
mod layer;
mod limit;
mod methods;
mod setup;
mod tls;
mod tokens;

use std::{fmt, net::SocketAddr, path::PathBuf};

use arc_swap::ArcSwap;

pub use config::{AuthConfig, JwtAlgorithm, JwtSecret};
pub use layer::{AuthLayer, AuthService};
pub use limit::{RateLimit, RateLimiter};
pub use methods::{ADMIN_METHODS, Access, READ_METHODS, access};
pub use setup::setup;
pub use tls::{Loaded as LoadedTls, ServerTls, certificate_subject};
pub use tokens::{TokenFile, hash_token};

use jwt::JwtVerifier;
use tokens::Credentials;

/// What a config reload can change in the security layer: the TLS certificates and the tokens
/// file's credentials (the rate limit is applied by [`crate::config::live`]; JWT settings and
/// the rest are read at start).
#[derive(Debug, Clone)]
pub struct Security {
    /// TLS of the gRPC port, when on.
    pub tls: Option<std::sync::Arc<ServerTls>>,
    /// The authenticator the auth layer uses (its tokens file is re-read on a reload).
    pub auth: std::sync::Arc<Authenticator>,
}

/// A permission an RPC may require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Read-only RPCs: matching, listing, status.
    Read,
    /// Everything that changes state (reloads, drains, pattern writes); includes `read`.
    Admin,
}

impl Scope {
    /// The scope's name in tokens, JWT claims and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    /// Parses `read` or `admin`; anything else is not a scope of this service (ignored in JWT
    /// claims, an error in the tokens file).
    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes a caller holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes {
    /// Holds `read`.
    pub read: bool,
    /// Holds `admin` (which allows `read` RPCs too).
    pub admin: bool,
}

impl Scopes {
    /// Both scopes.
    pub const ALL: Scopes = Scopes {
        read: true,
        admin: true,
    };
    /// Only `read`.
    pub const READ: Scopes = Scopes {
        read: true,
        admin: false,
    };

    /// The scopes named in `names`, ignoring names that are not scopes of this service.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Scopes {
        let mut scopes = Scopes::default();
        for name in names {
            match Scope::parse(name) {
                Some(Scope::Read) => scopes.read = true,
                Some(Scope::Admin) => scopes.admin = true,
                None => {}
            }
        }
        scopes
    }

    /// Whether these scopes allow an RPC that requires `scope`.
    pub fn allows(self, scope: Scope) -> bool {
        match scope {
            Scope::Read => self.read || self.admin,
            Scope::Admin => self.admin,
        }
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.read, self.admin) {
            (_, true) => f.write_str("admin"),
            (true, false) => f.write_str("read"),
            (false, false) => f.write_str("none"),
        }
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A static bearer token from the tokens file.
    Token,
    /// A signed JWT.
    Jwt,
    /// A verified TLS client certificate.
    Certificate,
    /// No credentials configured: a peer on this machine, trusted with every scope.
    Loopback,
    /// No credentials configured: anyone, for read RPCs.
    Anonymous,
}

impl CredentialKind {
    /// Short name for logs and the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Token => "token",
            CredentialKind::Jwt => "jwt",
            CredentialKind::Certificate => "certificate",
            CredentialKind::Loopback => "loopback",
            CredentialKind::Anonymous => "anonymous",
        }
    }
}

/// The authenticated caller of a request, in its extensions
/// (`request.extensions().get::<Caller>()`) for every hotplane RPC that passed the auth layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who called: the token's configured name, the JWT's name claim (`sub` by default), the
    /// client certificate's subject (`CN=deployer,O=ops`), or `loopback` / `anonymous` under
    /// the default without credentials.
    pub name: String,
    /// What the caller may do.
    pub scopes: Scopes,
    /// How the caller authenticated.
    pub via: CredentialKind,
    /// The peer's address, when the transport knows it.
    pub peer: Option<SocketAddr>,
}

/// Why a request was refused; the layer turns it into a gRPC status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Missing or bad credentials: `UNAUTHENTICATED`.
    #[error("{0}")]
    Unauthenticated(String),
    /// A known caller without the scope, or a refused peer: `PERMISSION_DENIED`.
    #[error("{0}")]
    PermissionDenied(String),
}

/// The configured ways to authenticate, built once from [`AuthConfig`]; the tokens file's
/// credentials can be replaced at run time ([`Authenticator::prepare_tokens`], then
/// [`Authenticator::install_tokens`]).
#[derive(Debug, Default)]
pub struct Authenticator {
    /// The tokens file (`--auth-tokens-file`), re-read from the same path on a reload.
    tokens_file: Option<PathBuf>,
    /// Static tokens and certificate subjects from the tokens file. An `ArcSwap` because a
    /// reload replaces them while requests are being admitted: each admission loads one
    /// consistent set without a lock, and a request admitted before the swap finishes as it
    /// was admitted.
    credentials: ArcSwap<Credentials>,
    /// JWT verification, when configured.
    jwt: Option<JwtVerifier>,
    /// Scopes of a verified client certificate whose subject the tokens file does not list
    /// (`None`: mTLS is not configured, certificates are not credentials).
    certificate_scopes: Option<Scopes>,
}

/// What a request offers to prove its caller's identity (taken from it by the layer).
#[derive(Debug, Default)]
pub struct Presented<'a> {
    /// The `authorization` metadata value, if any.
    pub authorization: Option<&'a [u8]>,
    /// The verified client certificate's subject, if the connection has one.
    pub certificate_subject: Option<String>,
    /// The peer's address.
    pub peer: Option<SocketAddr>,
}

/// A tokens file read and checked by [`Authenticator::prepare_tokens`], not yet in use.
#[derive(Debug)]
pub struct LoadedTokens(Credentials);

impl LoadedTokens {
    /// How a reload's answer shows these credentials (see [`Authenticator::describe_tokens`]).
    pub fn describe(&self) -> String {
        self.0.describe()
    }
}

/// The message of a refused state-changing RPC under the default without credentials.
pub const CONFIGURE_AUTH_HINT: &str = "no credentials are configured, so state-changing RPCs are accepted only from \
     loopback; configure --auth-tokens-file (static tokens), --auth-jwt-* (JWTs) or \
     --tls-client-ca-file (mTLS) and call with credentials (see docs/security.md)";

impl Authenticator {
    /// Builds the authenticator: reads the tokens file and the JWT key. Errors name the flag
    /// at fault.
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<Authenticator> {
        let credentials = match &config.auth_tokens_file {
            Some(path) => Credentials::load(path)?,
            None => Credentials::default(),
        };
        let jwt = JwtVerifier::from_config(config)?;
        let certificate_scopes = config
            .tls_client_ca_file
            .as_ref()
            .map(|_| Scopes::from_names(config.tls_client_scopes.iter().map(String::as_str)));
        Ok(Authenticator {
            tokens_file: config.auth_tokens_file.clone(),
            credentials: ArcSwap::from_pointee(credentials),
            jwt,
            certificate_scopes,
        })
    }

    /// Whether any credential is configured; without one the loopback default applies.
    pub fn has_credentials(&self) -> bool {
        !self.credentials.load().is_empty()
            || self.jwt.is_some()
            || self.certificate_scopes.is_some()
    }

    /// Re-reads and checks the tokens file (`None` without one), changing nothing. A file that
    /// would leave no credential at all is refused: that would switch a server that requires
    /// credentials to the open loopback default, which only a restart should do.
    pub fn prepare_tokens(&self) -> Option<anyhow::Result<LoadedTokens>> {
        let path = self.tokens_file.as_ref()?;
        Some(Credentials::load(path).and_then(|next| {
            let only_tokens = self.jwt.is_none() && self.certificate_scopes.is_none();
            if next.is_empty() && only_tokens && !self.credentials.load().is_empty() {
                anyhow::bail!(
                    "the tokens file {} lists no token and no client: a reload cannot turn                      authentication off (restart for the loopback default)",
                    path.display()
                );
            }
            Ok(LoadedTokens(next))
        }))
    }

    /// The running tokens file's credentials, as a reload's answer shows them.
    pub fn describe_tokens(&self) -> String {
        self.credentials.load().describe()
    }

    /// Uses prepared credentials for every request admitted from now on; returns the running
    /// description and the new one.
    pub fn install_tokens(&self, loaded: LoadedTokens) -> (String, String) {
        let new = loaded.0.describe();
        let old = self.credentials.swap(std::sync::Arc::new(loaded.0));
        (old.describe(), new)
    }

    /// Decides who calls a method that requires `scope`: the caller, or why it is refused.
    /// `trusted_peer` says whether the peer counts as local (the loopback default).
    pub fn authorize(
        &self,
        scope: Scope,
        presented: Presented<'_>,
        trusted_peer: impl Fn(Option<SocketAddr>) -> bool,
    ) -> Result<Caller, AuthError> {
        let peer = presented.peer;
        let caller = if self.has_credentials() {
            self.authenticate(presented)?
        } else if trusted_peer(peer) {
            Caller {
                name: "loopback".into(),
                scopes: Scopes::ALL,
                via: CredentialKind::Loopback,
                peer,
            }
        } else if scope == Scope::Read {
            Caller {
                name: "anonymous".into(),
                scopes: Scopes::READ,
                via: CredentialKind::Anonymous,
                peer,
            }
        } else {
            return Err(AuthError::PermissionDenied(CONFIGURE_AUTH_HINT.into()));
        };
        if caller.scopes.allows(scope) {
            Ok(caller)
        } else {
            Err(AuthError::PermissionDenied(format!(
                "caller {:?} lacks the {scope} scope this RPC requires",
                caller.name
            )))
        }
    }

    /// Authenticates with the configured credentials: a bearer token (static or JWT) wins over
    /// a client certificate.
    fn authenticate(&self, presented: Presented<'_>) -> Result<Caller, AuthError> {
        let peer = presented.peer;
        if let Some(value) = presented.authorization {
            let token = bearer(value)?;
            if let Some((name, scopes)) = self.credentials.load().token(token) {
                return Ok(Caller {
                    name,
                    scopes,
                    via: CredentialKind::Token,
                    peer,
                });
            }
            return match &self.jwt {
                Some(jwt) if looks_like_jwt(token) => {
                    let (name, scopes) = jwt.verify(token)?;
                    Ok(Caller {
                        name,
                        scopes,
                        via: CredentialKind::Jwt,
                        peer,
                    })
                }
                _ => Err(AuthError::Unauthenticated(
                    "the bearer token is not valid".into(),
                )),
            };
        }
        if let (Some(subject), Some(default)) =
            (presented.certificate_subject, self.certificate_scopes)
        {
            let scopes = self
                .credentials
                .load()
                .certificate(&subject)
                .unwrap_or(default);
            return Ok(Caller {
                name: subject,
                scopes,
                via: CredentialKind::Certificate,
                peer,
            });
        }
        Err(AuthError::Unauthenticated(
            "credentials required: send `authorization: Bearer <token>` (or a client certificate)"
                .into(),
        ))
    }
}

/// The token of an `authorization: Bearer <token>` value.
fn bearer(value: &[u8]) -> Result<&str, AuthError> {
    let bad = || AuthError::Unauthenticated("authorization must be `Bearer <token>`".into());
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    let (scheme, token) = text.split_once(' ').ok_or_else(bad)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(bad());
    }
    Ok(token)
}

/// A JWT is three base64url parts joined by dots.
fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Whether a peer may use state-changing RPCs under the default without credentials: a
/// loopback address (IPv4 `127.0.0.0/8`, IPv6 `::1`, or IPv4-mapped loopback). An unknown peer
/// is not trusted.
pub fn is_loopback_peer(peer: Option<SocketAddr>) -> bool {
    match peer.map(|p| p.ip()) {
        Some(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Some(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests;
