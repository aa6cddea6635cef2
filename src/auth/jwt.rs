//! JWT bearer tokens: one configured algorithm and key, `exp` required, `nbf`, `aud` and (when
//! configured) `iss` checked, the caller's name and scopes read from configurable claims.
//!
//! A client sends the same token on every call until it expires, and an RSA or ECDSA
//! signature check costs far more than a MatchPattern; so verified tokens are remembered (by
//! their SHA-256, up to [`CACHE_MAX`], never past their `exp`). Refused tokens are not.

use std::{collections::HashMap, sync::Mutex};

use anyhow::Context;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{AuthConfig, AuthError, JwtAlgorithm, Scopes};

/// Most verified tokens remembered; past it, expired ones are dropped, then all.
pub const CACHE_MAX: usize = 4096;

/// Verifies JWTs against the configured key.
pub(super) struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    scope_claim: String,
    name_claim: String,
    /// Verified tokens by SHA-256: who they name and until when (`exp`, Unix seconds).
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

#[derive(Debug, Clone)]
struct Verified {
    name: String,
    scopes: Scopes,
    exp: u64,
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
            verified: Mutex::new(HashMap::new()),
        }))
    }

    /// The caller's name and scopes, or why the token is refused (never echoing the token).
    pub(super) fn verify(&self, token: &str) -> Result<(String, Scopes), AuthError> {
        let id: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(hit) = self.remembered(&id, now) {
            return Ok(hit);
        }
        let (name, scopes, exp) = self.check(token)?;
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= CACHE_MAX {
            let leeway = self.validation.leeway;
            verified.retain(|_, v| now <= v.exp.saturating_add(leeway));
            if verified.len() >= CACHE_MAX {
                verified.clear();
            }
        }
        let remembered = Verified {
            name: name.clone(),
            scopes,
            exp,
        };
        verified.insert(id, remembered);
        Ok((name, scopes))
    }

    /// A token verified before and not expired at `now` (with the leeway, as `decode` checks).
    fn remembered(&self, id: &[u8; 32], now: u64) -> Option<(String, Scopes)> {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        let v = verified.get(id)?;
        (now <= v.exp.saturating_add(self.validation.leeway)).then(|| (v.name.clone(), v.scopes))
    }

    /// Full verification: signature, claims, name and scopes (and `exp`, for the cache).
    fn check(&self, token: &str) -> Result<(String, Scopes, u64), AuthError> {
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
        // `decode` required `exp` and checked it is a number in the future.
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Ok((name, scopes, exp))
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

#[cfg(test)]
mod tests {
    use clap::Parser;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier() -> JwtVerifier {
        let cli = crate::config::Cli::try_parse_from([
            "hotplane",
            "--auth-jwt-algorithm",
            "hs256",
            "--auth-jwt-secret",
            SECRET,
            "--auth-jwt-audience",
            "hotplane",
            "--auth-jwt-leeway",
            "5s",
        ])
        .expect("parses");
        JwtVerifier::from_config(&cli.config.auth)
            .expect("builds")
            .expect("configured")
    }

    fn token(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("encodes")
    }

    #[test]
    fn verified_tokens_are_remembered_until_they_expire_refused_ones_never() {
        let v = verifier();
        let now = jsonwebtoken::get_current_timestamp();
        let exp = now + 100;
        let admin = Scopes {
            read: false,
            admin: true,
        };
        let good = token(
            serde_json::json!({"sub": "ci", "aud": "hotplane", "exp": exp, "scope": "admin"}),
        );
        let id: [u8; 32] = Sha256::digest(good.as_bytes()).into();
        assert!(v.remembered(&id, now).is_none());
        assert_eq!(v.verify(&good), Ok(("ci".into(), admin)));
        assert_eq!(v.remembered(&id, now), Some(("ci".into(), admin)));
        assert!(v.remembered(&id, exp + 5).is_some(), "within the leeway");
        assert!(
            v.remembered(&id, exp + 6).is_none(),
            "never past exp + leeway"
        );

        let expired = token(serde_json::json!({"sub": "ci", "aud": "hotplane", "exp": now - 3600}));
        assert!(v.verify(&expired).is_err());
        let id: [u8; 32] = Sha256::digest(expired.as_bytes()).into();
        assert!(
            v.remembered(&id, 0).is_none(),
            "refused tokens are not remembered"
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let v = verifier();
        let exp = jsonwebtoken::get_current_timestamp() + 100;
        for i in 0..=CACHE_MAX {
            let t =
                token(serde_json::json!({"sub": format!("c{i}"), "aud": "hotplane", "exp": exp}));
            assert!(v.verify(&t).is_ok());
        }
        assert!(v.verified.lock().expect("lock").len() <= CACHE_MAX);
    }
}
