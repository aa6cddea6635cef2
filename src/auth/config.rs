//! The security settings, flattened into the service's [`crate::config::Config`]: credentials,
//! TLS and rate limits. `Debug` never shows the JWT secret.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

/// JWT signature algorithms accepted (one per deployment, so a token cannot pick a weaker one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret (`--auth-jwt-secret`).
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256; the issuer's public key in `--auth-jwt-key-file`.
    Rs256,
    /// ECDSA P-256 with SHA-256; the issuer's public key in `--auth-jwt-key-file`.
    Es256,
}

/// A JWT HMAC secret; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSecret(pub(crate) Vec<u8>);

impl JwtSecret {
    /// A secret from its text (tests and embedding; the flag checks its length).
    pub fn new(text: &str) -> JwtSecret {
        JwtSecret(text.as_bytes().to_vec())
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(***)")
    }
}

fn parse_jwt_secret(text: &str) -> Result<JwtSecret, String> {
    if text.len() < 32 {
        return Err(
            "the JWT secret must be at least 32 bytes (HS256 keys shorter than the hash are weak)"
                .into(),
        );
    }
    Ok(JwtSecret(text.as_bytes().to_vec()))
}

/// Authentication, TLS and rate-limit settings.
#[derive(Debug, Clone, Args)]
pub struct AuthConfig {
    /// JSON file of static bearer tokens (`{"tokens": [{"name", "sha256", "scopes"}]}`, stored
    /// as SHA-256 hex hashes) and of client-certificate subjects' scopes (`"clients"`). Unset,
    /// with no JWT and no mTLS: read RPCs are open and state-changing ones accepted only from
    /// loopback.
    #[arg(long, env = "HOTPLANE_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,

    /// Accept JWTs signed with this algorithm (`hs256` with `--auth-jwt-secret`, `rs256` or
    /// `es256` with `--auth-jwt-key-file`).
    #[arg(long, env = "HOTPLANE_AUTH_JWT_ALGORITHM", value_enum)]
    pub auth_jwt_algorithm: Option<JwtAlgorithm>,

    /// HS256 shared secret (at least 32 bytes). Prefer the environment variable: flags show in `ps`.
    #[arg(long, env = "HOTPLANE_AUTH_JWT_SECRET", hide_env_values = true, value_parser = parse_jwt_secret)]
    pub auth_jwt_secret: Option<JwtSecret>,

    /// RS256/ES256: PEM file with the issuer's public key (`-----BEGIN PUBLIC KEY-----`).
    #[arg(long, env = "HOTPLANE_AUTH_JWT_KEY_FILE")]
    pub auth_jwt_key_file: Option<PathBuf>,

    /// Required `aud` of every JWT (needed when JWTs are on: a token minted for another
    /// service must not work here).
    #[arg(long, env = "HOTPLANE_AUTH_JWT_AUDIENCE")]
    pub auth_jwt_audience: Option<String>,

    /// Required `iss` of every JWT, when set.
    #[arg(long, env = "HOTPLANE_AUTH_JWT_ISSUER")]
    pub auth_jwt_issuer: Option<String>,

    /// Claim holding the scopes: a space-separated string (`"read admin"`, OAuth style) or an
    /// array of strings.
    #[arg(long, env = "HOTPLANE_AUTH_JWT_SCOPE_CLAIM", default_value = "scope")]
    pub auth_jwt_scope_claim: String,

    /// Claim naming the caller (for logs and the audit trail).
    #[arg(long, env = "HOTPLANE_AUTH_JWT_NAME_CLAIM", default_value = "sub")]
    pub auth_jwt_name_claim: String,

    /// Clock skew allowed on `exp` and `nbf`.
    #[arg(long, env = "HOTPLANE_AUTH_JWT_LEEWAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub auth_jwt_leeway: Duration,

    /// Serve gRPC over TLS with this PEM certificate chain (needs `--tls-key-file`).
    #[arg(long, env = "HOTPLANE_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of `--tls-cert-file`.
    #[arg(long, env = "HOTPLANE_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// mTLS: PEM CA certificate(s) that sign client certificates. Clients must then present
    /// one (unless `--tls-client-cert-optional`); its subject becomes the caller's name.
    #[arg(long, env = "HOTPLANE_TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,

    /// mTLS: also accept connections without a client certificate (those callers then need a
    /// bearer token).
    #[arg(
        long,
        env = "HOTPLANE_TLS_CLIENT_CERT_OPTIONAL",
        default_value_t = false
    )]
    pub tls_client_cert_optional: bool,

    /// mTLS: scopes of a client certificate whose subject the tokens file's `clients` does not
    /// list.
    #[arg(
        long,
        env = "HOTPLANE_TLS_CLIENT_SCOPES",
        value_delimiter = ',',
        default_value = "read"
    )]
    pub tls_client_scopes: Vec<String>,

    /// With TLS on: also serve `grpc.health.v1` alone, in plaintext, on this address (for
    /// probes that cannot speak TLS; port 0 picks a free port).
    #[arg(long, env = "HOTPLANE_HEALTH_LISTEN")]
    pub health_listen: Option<SocketAddr>,

    /// State-changing RPCs each caller may make per second, on average (0: no limit).
    #[arg(long, env = "HOTPLANE_ADMIN_RATE", default_value_t = 10.0)]
    pub admin_rate: f64,

    /// State-changing RPCs a caller may make at once before the average rate applies.
    #[arg(long, env = "HOTPLANE_ADMIN_BURST", default_value_t = 50)]
    pub admin_burst: u32,
}

impl AuthConfig {
    /// Whether the gRPC port speaks TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert_file.is_some()
    }

    /// Checks combinations clap cannot express; the error names the flag.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let bad = |field, reason: &str| Err((field, reason.to_owned()));
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return bad(
                "tls-cert-file",
                "--tls-cert-file and --tls-key-file go together",
            );
        }
        if self.tls_client_ca_file.is_some() && !self.tls_enabled() {
            return bad(
                "tls-client-ca-file",
                "mTLS needs TLS: set --tls-cert-file and --tls-key-file",
            );
        }
        if self.health_listen.is_some() && !self.tls_enabled() {
            return bad(
                "health-listen",
                "a separate plaintext health port is only for TLS deployments (health is already served in plaintext)",
            );
        }
        if let Some(bad_scope) = self
            .tls_client_scopes
            .iter()
            .find(|s| super::Scope::parse(s).is_none())
        {
            return Err((
                "tls-client-scopes",
                format!("unknown scope {bad_scope:?}: use read, admin"),
            ));
        }
        if !self.admin_rate.is_finite() || self.admin_rate < 0.0 {
            return bad("admin-rate", "must be a number >= 0 (0: no limit)");
        }
        if self.admin_rate > 0.0 && self.admin_burst == 0 {
            return bad("admin-burst", "must be at least 1");
        }
        match self.auth_jwt_algorithm {
            None if self.auth_jwt_secret.is_some() || self.auth_jwt_key_file.is_some() => bad(
                "auth-jwt-algorithm",
                "set the algorithm of the configured JWT key (hs256, rs256, es256)",
            ),
            None => Ok(()),
            Some(alg) => {
                if self.auth_jwt_audience.as_deref().is_none_or(str::is_empty) {
                    return bad(
                        "auth-jwt-audience",
                        "JWTs need an audience, so tokens minted for other services are refused",
                    );
                }
                match alg {
                    JwtAlgorithm::Hs256 if self.auth_jwt_secret.is_none() => {
                        bad("auth-jwt-secret", "hs256 needs --auth-jwt-secret")
                    }
                    JwtAlgorithm::Rs256 | JwtAlgorithm::Es256
                        if self.auth_jwt_key_file.is_none() =>
                    {
                        bad(
                            "auth-jwt-key-file",
                            "rs256 and es256 need --auth-jwt-key-file",
                        )
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}
