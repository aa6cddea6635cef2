//! Log setup: `tracing` with an env-filter, as text or JSON lines. The filter can be replaced
//! at run time ([`set_filter`], used by the live config); the format is fixed at start.

use std::{io::IsTerminal, sync::OnceLock};

use tracing_subscriber::{
    EnvFilter, Registry, fmt, layer::SubscriberExt, reload, util::SubscriberInitExt,
};

use crate::config::LogFormat;

/// The reload handle of the filter of the subscriber [`init`] installed. Process-global
/// because the subscriber is: there is one log output per process, whatever embeds the library.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber. Returns an error message for a bad filter; a second call
/// (tests start many servers in one process) is a no-op.
pub fn init(filter: &str, format: LogFormat) -> Result<(), String> {
    let filter = parse(filter)?;
    let (filter, handle) = reload::Layer::new(filter);
    // Colours only on a terminal: log files and collectors get plain text.
    let output = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match format {
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(output)
            .try_init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(output.json().flatten_event(true))
            .try_init(),
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
    Ok(())
}

/// Replaces the log filter. `Ok(false)`: this process has no subscriber from [`init`] (a test
/// or an embedding application owns logging), so there is nothing to change.
pub fn set_filter(filter: &str) -> Result<bool, String> {
    let filter = parse(filter)?;
    match FILTER.get() {
        None => Ok(false),
        Some(handle) => handle
            .reload(filter)
            .map(|()| true)
            .map_err(|e| format!("replacing the log filter: {e}")),
    }
}

fn parse(filter: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(filter).map_err(|e| format!("invalid log filter {filter:?}: {e}"))
}
