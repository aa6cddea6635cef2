//! The `hotplane` binary as an operator runs it: defaults only (embedded SQLite file in the
//! working directory), a real process, a real SIGTERM.

use std::{path::Path, process::Stdio, time::Duration};

use hotplane::pb::{self, hot_reload_client::HotReloadClient};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic_health::pb::health_client::HealthClient;

use rustix::process::Signal;

use crate::helpers::{DEADLINE, send_signal};

/// Starts the binary in `dir` with `args`, returning the child and the address it logged.
pub async fn start(dir: &Path, args: &[&str]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotplane"));
    cmd.args(args).current_dir(dir);
    spawn_listening(cmd, &[], DEADLINE).await
}

/// [`start`] with `env` added to the environment.
pub async fn start_with_env(dir: &Path, args: &[&str], env: &[(&str, String)]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotplane"));
    cmd.args(args).current_dir(dir);
    spawn_listening(cmd, env, DEADLINE).await
}

/// Spawns `cmd` (the hotplane binary, or a command that execs it) with JSON logs, no inherited
/// listen address or database but those in `env`, and returns it with the address it logged
/// once it listens, within `deadline`.
async fn spawn_listening(
    cmd: Command,
    env: &[(&str, String)],
    deadline: Duration,
) -> (Child, String) {
    let mut child = spawn_logging(cmd, env);
    let addr = listening(&mut child, deadline).await;
    (child, addr)
}

/// Spawns `cmd` as [`spawn_listening`] does, without waiting.
fn spawn_logging(mut cmd: Command, env: &[(&str, String)]) -> Child {
    cmd.env("HOTPLANE_LOG_FORMAT", "json")
        .env_remove("HOTPLANE_DATABASE_URL")
        .env_remove("HOTPLANE_LISTEN")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("hotplane starts")
}

/// The address `child` logs once it listens, within `deadline`.
async fn listening(child: &mut Child, deadline: Duration) -> String {
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let addr = tokio::time::timeout(deadline, async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                seen.push(line); // cargo's own lines, or a panic
                continue;
            };
            if v["message"] == "hotplane listening" {
                return v["addr"].as_str().expect("addr field").to_owned();
            }
        }
        panic!("hotplane exited before listening: {}", seen.join("\n"));
    })
    .await
    .expect("listening before the deadline");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    addr
}

/// Connects to `addr` and waits until health says SERVING.
pub async fn connect_serving(addr: &str) -> tonic::transport::Channel {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    crate::helpers::wait_serving(&HealthClient::new(channel.clone())).await;
    channel
}

/// Waits until the server at `addr` is SERVING and checks it serves from SQLite (the default);
/// the connection is closed again, so no stream outlives the probe.
async fn serves_on_sqlite(addr: &str) {
    let channel = connect_serving(addr).await;
    let status = HotReloadClient::new(channel)
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.store.expect("store").backend, "sqlite");
}

/// Sends SIGTERM and expects exit code 0 (a clean shutdown) before the deadline.
async fn sigterm_exits_cleanly(mut child: Child) {
    signal(&child, Signal::TERM);
    let exit = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("exits before the deadline")
        .expect("wait");
    assert_eq!(
        exit.code(),
        Some(0),
        "SIGTERM is a clean shutdown: {exit:?}"
    );
}

/// The README's run command, word for word from its "two commands" block, run in the checkout
/// as a new user would (`cargo run --release`): it starts the server with nothing else
/// configured, which reaches SERVING on the embedded SQLite default and exits 0 on SIGTERM.
/// Only the environment moves the port (tests never take a fixed one) and the SQLite file (not
/// into the checkout). scripts/test.sh builds the release binary first, so cargo only starts it
/// here; on a cold target it builds it (nextest allows this test longer, .config/nextest.toml).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_run_command_starts_the_server_and_sigterm_stops_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let block = readme
        .split_once("## The two commands")
        .and_then(|(_, rest)| rest.split_once("```sh\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("the README has a sh block under '## The two commands'");
    let run = block
        .lines()
        .next()
        .and_then(|line| line.split('#').next())
        .map(str::trim)
        .expect("the block's first line is the run command");
    let words: Vec<&str> = run.split_whitespace().collect();
    assert_eq!(
        words.first(),
        Some(&"cargo"),
        "the run command is cargo's: {run:?}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("hotplane.db");
    let mut cmd = Command::new(words[0]);
    cmd.args(&words[1..]).current_dir(root);
    // A user's shell, not the test runner's: the variables cargo and nextest set for a test
    // (OUT_DIR, LD_LIBRARY_PATH, CARGO_PKG_*, ...) reach build scripts that watch them and
    // would make cargo rebuild the release target, which the shell's `cargo run` would then
    // rebuild again.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key == "CARGO"
            || key == "OUT_DIR"
            || key == "LD_LIBRARY_PATH"
            || key == "CARGO_MANIFEST_DIR"
            || key == "CARGO_CRATE_NAME"
            || key == "CARGO_PRIMARY_PACKAGE"
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_EXE_")
            || key.starts_with("NEXTEST")
        {
            cmd.env_remove(&*key);
        }
    }
    let (child, addr) = spawn_listening(
        cmd,
        &[
            ("HOTPLANE_LISTEN", "127.0.0.1:0".to_owned()),
            (
                "HOTPLANE_DATABASE_URL",
                format!("sqlite://{}", db.display()),
            ),
        ],
        Duration::from_secs(20 * 60),
    )
    .await;
    serves_on_sqlite(&addr).await;
    assert!(db.exists(), "the embedded SQLite default was created");
    sigterm_exits_cleanly(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_defaults_serves_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (child, addr) = start(dir.path(), &["--listen", "127.0.0.1:0"]).await;
    assert!(
        dir.path().join("hotplane.db").exists(),
        "default embedded SQLite file created"
    );

    serves_on_sqlite(&addr).await;
    sigterm_exits_cleanly(child).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_command_and_bad_config_exit_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_hotplane"))
        .arg("migrate")
        .current_dir(dir.path())
        .env_remove("HOTPLANE_DATABASE_URL")
        .output()
        .await
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("hotplane.db").exists());

    let out = Command::new(env!("CARGO_BIN_EXE_hotplane"))
        .args(["--learn-min-confidence", "2", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("learn-min-confidence"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_hotplane"))
        .args(["--database-url", "mysql://nope", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unsupported database URL"), "{err}");

    // An invalid config file stops the start, naming every key at fault.
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[learn]\nmin_confidense = 0.5\n[poll]\nintervall = \"1s\"\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_hotplane"))
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("learn.min_confidense: unknown key") && err.contains("poll.intervall"),
        "{err}"
    );
}

/// Waits until `check` holds for this process's status.
async fn status_until(
    client: &HotReloadClient<tonic::transport::Channel>,
    what: &str,
    check: impl Fn(&pb::GetStatusResponse) -> bool,
) -> pb::GetStatusResponse {
    crate::helpers::eventually(what, || {
        let mut client = client.clone();
        let check = &check;
        async move {
            let s = client
                .get_status(pb::GetStatusRequest {})
                .await
                .ok()?
                .into_inner();
            check(&s).then_some(s)
        }
    })
    .await
}

fn signal(child: &Child, sig: Signal) {
    send_signal(child.id().expect("pid"), sig);
}

fn config_target(s: &pb::GetStatusResponse) -> &pb::TargetStatus {
    s.targets
        .iter()
        .find(|t| t.target == pb::Target::Config as i32)
        .expect("TARGET_CONFIG")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_the_config_file_and_an_invalid_one_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("hotplane.toml");
    std::fs::write(
        &file,
        "[learn]\nmin_confidence = 0.9\n[log]\nfilter = \"info\"\n",
    )
    .expect("write");
    let config = file.display().to_string();
    let (mut child, addr) = start(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--config", &config],
    )
    .await;
    let channel = connect_serving(&addr).await;
    let client = HotReloadClient::new(channel.clone());
    let mut patterns = pb::patterns_client::PatternsClient::new(channel.clone());
    let learn =
        |confidence| crate::helpers::learn_req("quali workflow sono attivi", "wf", confidence);
    assert!(
        patterns.learn_pattern(learn(0.7)).await.is_err(),
        "0.7 < 0.9"
    );

    std::fs::write(
        &file,
        "[learn]\nmin_confidence = 0.6\n[log]\nfilter = \"info,hotplane=debug\"\n",
    )
    .expect("write");
    signal(&child, Signal::HUP);
    let s = status_until(&client, "the SIGHUP reload", |s| {
        config_target(s)
            .current
            .as_ref()
            .is_some_and(|g| g.generation == 2)
    })
    .await;
    let current = config_target(&s).current.clone().expect("current");
    assert_eq!(current.source, pb::ReloadSource::Signal as i32);
    let c = s.config.expect("config");
    assert_eq!(c.learn_min_confidence, 0.6);
    assert_eq!(c.log_filter, "info,hotplane=debug");
    patterns
        .learn_pattern(learn(0.7))
        .await
        .expect("0.7 >= 0.6");

    // An invalid file on SIGHUP: logged and counted, the process keeps serving the old config.
    std::fs::write(&file, "[learn]\nmin_confidence = 7\n").expect("write");
    signal(&child, Signal::HUP);
    let s = status_until(&client, "the failed SIGHUP reload", |s| {
        config_target(s).failures_total == 1
    })
    .await;
    let t = config_target(&s);
    assert!(
        t.last_error.contains("learn.min_confidence"),
        "{}",
        t.last_error
    );
    assert_eq!(t.current.as_ref().expect("current").generation, 2);
    assert_eq!(s.config.expect("config").learn_min_confidence, 0.6);
    patterns
        .learn_pattern(learn(0.65))
        .await
        .expect("still threshold 0.6, still serving");
    // Both SIGHUPs are in the audit trail, as the signal.
    let audited = crate::helpers::eventually("two audited SIGHUP reloads", || {
        let mut client = client.clone();
        async move {
            let rows = client
                .list_audit(pb::ListAuditRequest {
                    action: "config_reload".into(),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .entries;
            (rows.len() == 2).then_some(rows)
        }
    })
    .await;
    assert!(
        audited
            .iter()
            .all(|r| r.caller == "signal" && r.source == "signal" && r.reason == "SIGHUP"),
        "{audited:?}"
    );

    drop((patterns, client, channel));
    signal(&child, Signal::TERM);
    let exit = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("exits before the deadline")
        .expect("wait");
    assert_eq!(exit.code(), Some(0));
}

/// A SIGHUP that arrives while the server is still starting (here: its migrations wait on a lock
/// another client holds) does not kill it, which is SIGHUP's default action; the server starts,
/// then re-reads its config for that signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_during_start_up_does_not_kill_the_process() {
    use sqlx::{Connection, Executor, PgConnection};
    let db = crate::db::TestDb::postgres().await;
    db.store().await.close().await; // migrated, so the lock below has a table to hold
    let mut blocker = PgConnection::connect(db.url()).await.expect("connect");
    blocker.execute("BEGIN").await.expect("begin");
    blocker
        .execute("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");

    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotplane"));
    cmd.current_dir(dir.path());
    let mut child = spawn_logging(
        cmd,
        &[
            ("HOTPLANE_LISTEN", "127.0.0.1:0".to_owned()),
            ("HOTPLANE_DATABASE_URL", db.url().to_owned()),
        ],
    );
    // The server's migration waits on the lock: it is inside its start-up.
    let crate::db::SqlClient::Postgres(watcher) = db.client().await else {
        unreachable!("a PostgreSQL database")
    };
    crate::helpers::eventually("the server's migration waiting on the lock", || {
        let watcher = watcher.clone();
        async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&watcher)
            .await
            .ok()?;
            (waiting > 0).then_some(())
        }
    })
    .await;
    signal(&child, Signal::HUP);
    blocker.execute("ROLLBACK").await.expect("release the lock");

    let addr = listening(&mut child, DEADLINE).await;
    drop(connect_serving(&addr).await);
    sigterm_exits_cleanly(child).await;
}

/// An environment variable pins its key over the config file (flag > env > file > default):
/// the variable's value is served, and GetStatus names the pinned key, the file's ignored value
/// and the variable, from start and after a SIGHUP re-read of an edited file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_variable_pins_its_key_over_the_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("hotplane.toml");
    std::fs::write(&file, "[learn]\nmin_confidence = 0.8\n").expect("write");
    let config = file.display().to_string();
    let env = [("HOTPLANE_LEARN_MIN_CONFIDENCE", "0.5".to_owned())];
    let (child, addr) = start_with_env(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--config", &config],
        &env,
    )
    .await;
    let channel = connect_serving(&addr).await;
    let client = HotReloadClient::new(channel);
    let pinned = |s: &pb::GetStatusResponse| {
        let c = s.config.clone().expect("config");
        let p = c.pinned.first().cloned().unwrap_or_default();
        (c.learn_min_confidence, p.key, p.new_value, p.pinned_by)
    };
    let s = status_until(&client, "the status", |_| true).await;
    let expected = |file_value: &str| {
        (
            0.5,
            "learn.min_confidence".to_owned(),
            file_value.to_owned(),
            "HOTPLANE_LEARN_MIN_CONFIDENCE".to_owned(),
        )
    };
    assert_eq!(pinned(&s), expected("0.8"));

    std::fs::write(&file, "[learn]\nmin_confidence = 0.7\n").expect("write");
    signal(&child, Signal::HUP);
    let s = status_until(&client, "the SIGHUP re-read", |s| pinned(s).2 == "0.7").await;
    assert_eq!(pinned(&s), expected("0.7"));
}

/// SIGHUP re-reads the tokens file (no --config needed): the rotated token works, the old one
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_tokens_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens.json");
    let write = |token: &str| {
        let hash = hotplane::auth::hash_token(token);
        let text = format!(
            r#"{{"tokens": [{{"name": "deployer", "sha256": "{hash}", "scopes": ["admin"]}}]}}"#
        );
        std::fs::write(&tokens, text).expect("write tokens");
    };
    write("old-token-1");
    let path = tokens.display().to_string();
    let (child, addr) = start(
        dir.path(),
        &["--listen", "127.0.0.1:0", "--auth-tokens-file", &path],
    )
    .await;
    let channel = connect_serving(&addr).await;
    let status = |token: &'static str| {
        let mut client = HotReloadClient::new(channel.clone());
        async move {
            let mut req = tonic::Request::new(pb::GetStatusRequest {});
            let value = format!("Bearer {token}").parse().expect("ascii");
            req.metadata_mut().insert("authorization", value);
            client.get_status(req).await.map(drop)
        }
    };
    status("old-token-1").await.expect("the first token works");

    write("new-token-2");
    signal(&child, Signal::HUP);
    crate::helpers::eventually("the rotated token to work", || async {
        status("new-token-2").await.ok()
    })
    .await;
    let refused = status("old-token-1")
        .await
        .expect_err("the old token is gone");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
}
