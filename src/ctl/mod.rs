//! `hotplane ctl`: a command line for people operating a running server, on the gRPC client
//! build.rs generates. Every command is one or a few RPCs; it prints aligned columns, or with
//! `--json` the answer as proto3 JSON, and exits with a status scripts can rely on
//! ([`error::Exit`]). docs/cli.md has every command, its output and the exit codes.
//!
//! It reads no config file and opens no database: of the server's settings it uses only
//! `HOTPLANE_LISTEN` for the default address (as `hotplane health` does), so inside the
//! server's container it finds the server with no flags.
//!
//! - [`connect`]: address, token and TLS options (shared with `hotplane health`);
//! - [`error`]: one-line errors with every `google.rpc` detail, and the exit statuses;
//! - [`json`], [`output`]: the two output forms;
//! - `state.rs` (status, reload, rollback), `drain.rs`, `audit.rs`, `matching.rs`,
//!   `patterns.rs` (learn, patterns), `watch.rs` (the live event stream, resumed across restarts).

mod audit;
pub mod connect;
mod drain;
pub mod error;
pub mod json;
mod matching;
pub mod output;
mod patterns;
mod state;
mod watch;

use std::{ffi::OsString, net::SocketAddr, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use tonic::{service::interceptor::InterceptedService, transport::Channel};

pub use connect::ConnectArgs;
use connect::{Bearer, Target};
use error::{CtlError, Exit};

use crate::pb::{
    drain_client::DrainClient, hot_reload_client::HotReloadClient, patterns_client::PatternsClient,
};

/// hotplane ctl: operate a running hotplane server.
#[derive(Debug, Parser)]
#[command(name = "hotplane ctl", bin_name = "hotplane ctl", version)]
#[command(
    after_help = "Exit status: 0 ok, 1 refused by the server (precondition, not found, \
    unmet wait), 2 usage or bad input (INVALID_ARGUMENT), 3 unavailable (no connection, \
    draining, timeout, rate limit), 4 unauthenticated or not allowed, 5 server failure. \
    See docs/cli.md."
)]
pub struct CtlCli {
    /// The command.
    #[command(subcommand)]
    pub command: CtlCommand,
    /// Output and connection options.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Options every command takes, before or after its name.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Print the answer as JSON (proto3 JSON with the proto's field names; `watch`: one object
    /// per line; errors: one `{"error": ...}` object on stderr).
    #[arg(long, global = true)]
    pub json: bool,

    /// Give up connecting, and on each answer, after this long (a command's own wait, such as
    /// `--wait-for-fleet` or `drain start --grace`, is added). `watch` waits for events forever.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: Duration,

    /// Address, token and TLS.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// The commands.
#[derive(Debug, Clone, Subcommand)]
pub enum CtlCommand {
    /// What the server serves: generations, load health, store, drain, bus, fleet.
    Status,
    /// Build a new generation and swap it in (HotReload/Reload).
    Reload(state::ReloadArgs),
    /// Serve a retained generation again, pinned (HotReload/Rollback).
    Rollback(state::RollbackArgs),
    /// Take the server out of rotation and back (Drain).
    Drain {
        /// start, stop or status.
        #[command(subcommand)]
        action: drain::DrainAction,
    },
    /// Print events as they happen (HotReload/WatchStatus), resuming across reconnects and
    /// server restarts, until Ctrl-C (exit 0).
    Watch(watch::WatchArgs),
    /// Match one query (MatchPattern), or several in one snapshot (BatchMatchPatterns).
    Match(matching::MatchArgs),
    /// Learn a pattern (LearnPattern).
    Learn(patterns::LearnArgs),
    /// List, show, approve, disable or delete pattern rows.
    Patterns {
        /// list, get, approve, disable or delete.
        #[command(subcommand)]
        action: patterns::PatternsAction,
    },
    /// The audit trail, newest first (HotReload/ListAudit, admin scope).
    Audit(audit::AuditArgs),
}

/// Connected clients, each sending the bearer token.
#[derive(Clone)]
pub struct Clients {
    /// Patterns service.
    pub patterns: PatternsClient<InterceptedService<Channel, Bearer>>,
    /// HotReload service.
    pub reload: HotReloadClient<InterceptedService<Channel, Bearer>>,
    /// Drain service.
    pub drain: DrainClient<InterceptedService<Channel, Bearer>>,
}

impl Clients {
    fn new(channel: Channel, bearer: Bearer) -> Clients {
        Clients {
            patterns: PatternsClient::with_interceptor(channel.clone(), bearer.clone()),
            reload: HotReloadClient::with_interceptor(channel.clone(), bearer.clone()),
            drain: DrainClient::with_interceptor(channel, bearer),
        }
    }
}

/// What a command needs: its clients, the options, and where it connected.
pub struct Ctx {
    /// The clients.
    pub clients: Clients,
    /// `--json`.
    pub json: bool,
    /// `--timeout`.
    pub timeout: Duration,
    /// The endpoint (`watch` reconnects through it).
    pub target: Target,
    /// The bearer interceptor.
    pub bearer: Bearer,
}

impl Ctx {
    /// A request with a deadline of `--timeout` plus `extra` (a wait the command asked for).
    pub fn request<T>(&self, msg: T, extra: Duration) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.timeout + extra);
        req
    }

    /// Prints an answer: `text` for people, or `value` as JSON.
    pub fn answer(
        &self,
        text: impl FnOnce() -> String,
        value: impl FnOnce() -> serde_json::Value,
    ) -> Result<(), CtlError> {
        if self.json {
            output::print_json(&value(), false)
        } else {
            output::print(&text())
        }
    }
}

/// Parses `args` (`ctl` and what follows it) and runs the command: the exit status.
pub async fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match CtlCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { Exit::Usage as u8 } else { 0 });
        }
    };
    let json = cli.global.json;
    match run(cli).await {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(e) if e.exit == Exit::Ok => ExitCode::SUCCESS,
        Err(e) => {
            if json {
                eprintln!("{}", e.json);
            } else {
                eprintln!("hotplane ctl: {}", e.line);
            }
            ExitCode::from(e.exit as u8)
        }
    }
}

/// The default address: `HOTPLANE_LISTEN` when set (the server's own), else 127.0.0.1:50051.
fn default_addr() -> Result<String, String> {
    let listen = match std::env::var("HOTPLANE_LISTEN") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<SocketAddr>()
            .map_err(|e| format!("HOTPLANE_LISTEN={v:?}: {e}; pass --addr"))?,
        _ => SocketAddr::from(([127, 0, 0, 1], 50051)),
    };
    connect::default_addr(listen, "HOTPLANE_LISTEN").map(|a| a.to_string())
}

async fn run(cli: CtlCli) -> Result<Exit, CtlError> {
    let GlobalArgs {
        json,
        timeout,
        connect,
    } = cli.global;
    let target = connect::target(&connect, |_| default_addr(), timeout)?;
    let bearer = Bearer::new(&connect)?;
    // Watch connects (and reconnects) itself: a server that is down at first is waited for.
    let channel = match cli.command {
        CtlCommand::Watch(_) => target.endpoint.connect_lazy(),
        _ => target.connect(timeout).await?,
    };
    let ctx = Ctx {
        clients: Clients::new(channel, bearer.clone()),
        json,
        timeout,
        target,
        bearer,
    };
    match cli.command {
        CtlCommand::Status => state::status(&ctx).await,
        CtlCommand::Reload(args) => state::reload(&ctx, args).await,
        CtlCommand::Rollback(args) => state::rollback(&ctx, args).await,
        CtlCommand::Drain { action } => drain::drain(&ctx, action).await,
        CtlCommand::Audit(args) => audit::audit(&ctx, args).await,
        CtlCommand::Watch(args) => watch::watch(&ctx, args).await,
        CtlCommand::Match(args) => matching::matches(&ctx, args).await,
        CtlCommand::Learn(args) => patterns::learn(&ctx, args).await,
        CtlCommand::Patterns { action } => patterns::patterns(&ctx, action).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        CtlCli::command().debug_assert();
    }

    #[test]
    fn options_may_follow_the_command() {
        let cli = CtlCli::try_parse_from([
            "ctl",
            "reload",
            "--full",
            "--json",
            "--addr",
            "h:1",
            "--timeout",
            "2s",
        ])
        .expect("parses");
        assert!(cli.global.json);
        assert_eq!(cli.global.connect.addr.as_deref(), Some("h:1"));
        assert_eq!(cli.global.timeout, Duration::from_secs(2));
        let err = CtlCli::try_parse_from(["ctl", "reload", "--wait-for-fleet", "5s"])
            .expect_err("a fleet wait without --broadcast");
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }
}
