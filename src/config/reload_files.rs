//! The files a config reload re-reads besides the config file: the TLS certificate, key and
//! client CA (when TLS is on) and the tokens file (`--auth-tokens-file`). Each is read and
//! checked first; a file that does not load refuses the whole reload, naming it, and nothing
//! changes (neither these files nor the config). Once the config file is accepted too, they are
//! installed together and reported like changed keys: `tls.cert_file`, `auth.tokens_file`.

use crate::{
    auth::{LoadedTls, LoadedTokens, Security},
    config::live::Change,
};

/// The re-read files, checked and not yet in use.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// The TLS files, when TLS is on.
    tls: Option<LoadedTls>,
    /// The tokens file's credentials, when one is configured.
    tokens: Option<LoadedTokens>,
}

impl Prepared {
    /// Whether any file was re-read: without a config file, a reload re-reads these alone.
    pub(crate) fn any(&self) -> bool {
        self.tls.is_some() || self.tokens.is_some()
    }
}

/// Reads and checks every file; the error names the one that does not load (and its line,
/// when the parser says).
pub(crate) fn prepare(security: &Security) -> Result<Prepared, String> {
    let tls = match &security.tls {
        Some(tls) => Some(tls.prepare().map_err(|e| format!("{e:#}"))?),
        None => None,
    };
    let tokens = security
        .auth
        .prepare_tokens()
        .transpose()
        .map_err(|e| format!("{e:#}"))?;
    Ok(Prepared { tls, tokens })
}

/// Puts the prepared files in use for new connections and requests (unless `validate_only`:
/// then only reports); returns the changes, old → new.
pub(crate) fn install(security: &Security, prepared: Prepared, validate_only: bool) -> Vec<Change> {
    let mut changes = Vec::new();
    if let (Some(tls), Some(next)) = (&security.tls, prepared.tls) {
        let (old, new) = if validate_only {
            (tls.describe(), next.description)
        } else {
            tls.install(next)
        };
        changes.extend(change("tls.cert_file", old, new));
    }
    if let Some(next) = prepared.tokens {
        let auth = &security.auth;
        let (old, new) = if validate_only {
            (auth.describe_tokens(), next.describe())
        } else {
            auth.install_tokens(next)
        };
        if !validate_only && old != new {
            tracing::info!(%old, %new, "tokens file reloaded");
        }
        changes.extend(change("auth.tokens_file", old, new));
    }
    changes
}

fn change(key: &'static str, old: String, new: String) -> Option<Change> {
    (old != new).then_some(Change {
        key,
        old,
        new,
        restart_reason: "",
    })
}
