//! JWT bearer tokens: one configured algorithm and key, `exp` required, `nbf`, `aud` and (when
//! configured) `iss` checked, the caller's name and scopes read from configurable claims.

use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};

use super::{AuthConfig, AuthError, JwtAlgorithm, Scopes};

/// Verifies JWTs against the configured key.
pub(super) struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    scope_claim: String,
    name_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("aud", &self.validation.aud)
            .field("iss", &self.validation.iss)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// The verifier the config asks for, if any (the config was validated: the key matching
    /// the algorithm and the audience are present).
    pub(super) fn from_config(config: &AuthConfig) -> anyhow::Result<Option<JwtVerifier>> {
        let Some(alg) = config.auth_jwt_algorithm else {
            return Ok(None);
        };
        let read_key = || -> anyhow::Result<Vec<u8>> {
            let path = config
                .auth_jwt_key_file
                .as_ref()
                .context("--auth-jwt-key-file is required for rs256 and es256")?;
            std::fs::read(path).with_context(|| {
                format!(
                    "reading the JWT public key {} (--auth-jwt-key-file)",
                    path.display()
                )
            })
        };
        let (key, algorithm) = match alg {
            JwtAlgorithm::Hs256 => {
                let secret = config
                    .auth_jwt_secret
                    .as_ref()
                    .context("--auth-jwt-secret is required for hs256")?;
                (DecodingKey::from_secret(&secret.0), Algorithm::HS256)
            }
            JwtAlgorithm::Rs256 => (
                DecodingKey::from_rsa_pem(&read_key()?)
                    .context("--auth-jwt-key-file: not a PEM RSA public key")?,
                Algorithm::RS256,
            ),
            JwtAlgorithm::Es256 => (
                DecodingKey::from_ec_pem(&read_key()?)
                    .context("--auth-jwt-key-file: not a PEM EC (P-256) public key")?,
                Algorithm::ES256,
            ),
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = config.auth_jwt_leeway.as_secs();
        validation.validate_nbf = true;
        let audience = config
            .auth_jwt_audience
            .as_deref()
            .context("--auth-jwt-audience is required with JWTs")?;
        validation.set_audience(&[audience]);
        let mut required = vec!["exp", "aud"];
        if let Some(iss) = &config.auth_jwt_issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Some(JwtVerifier {
            key,
            validation,
            scope_claim: config.auth_jwt_scope_claim.clone(),
            name_claim: config.auth_jwt_name_claim.clone(),
        }))
    }

    /// The caller's name and scopes, or why the token is refused (never echoing the token).
    pub(super) fn verify(&self, token: &str) -> Result<(String, Scopes), AuthError> {
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|e| {
            AuthError::Unauthenticated(format!("invalid JWT: {}", reason(e.kind())))
        })?;
        let claims = data.claims;
        let name = match claims.get(&self.name_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(AuthError::Unauthenticated(format!(
                    "invalid JWT: the {:?} claim (the caller's name) is missing or not a string",
                    self.name_claim
                )));
            }
        };
        let scopes = match claims.get(&self.scope_claim) {
            Some(Value::String(s)) => Scopes::from_names(s.split_whitespace()),
            Some(Value::Array(items)) => Scopes::from_names(items.iter().filter_map(Value::as_str)),
            _ => Scopes::default(),
        };
        Ok((name, scopes))
    }
}

/// A short reason a client can act on.
fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not valid yet (nbf)",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm not accepted",
        ErrorKind::MissingRequiredClaim(_) => "a required claim (exp, aud, iss) is missing",
        _ => "malformed",
    }
}
