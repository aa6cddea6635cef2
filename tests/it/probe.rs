//! `hotplane health`, the real binary run as a child process against a real server: exit 0 when
//! SERVING, 1 with a one-line reason otherwise (draining, an unknown service, nothing
//! listening). The TLS cases are in `tls`, beside its certificates.

use std::process::Output;

use hotplane::pb;
use tokio::process::Command;

use crate::helpers::{Backend, DEADLINE, TestApp};

/// Runs `hotplane health ARGS` with `env` (no inherited listen address or config file) and
/// returns its output, within the deadline.
pub async fn health(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hotplane"));
    cmd.arg("health")
        .args(args)
        .env_remove("HOTPLANE_LISTEN")
        .env_remove("HOTPLANE_HEALTH_LISTEN")
        .env_remove("HOTPLANE_CONFIG")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .expect("hotplane health ends before the deadline")
        .expect("hotplane health runs")
}

/// The exit code, stdout and stderr of a probe, for assertions and their messages.
pub fn outcome(out: &Output) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exit 0 with one line on stdout.
pub fn assert_serving(out: &Output) {
    let (code, stdout, stderr) = outcome(out);
    assert_eq!(code, Some(0), "stdout {stdout:?}, stderr {stderr:?}");
    assert!(stdout.contains("is SERVING"), "{stdout:?}");
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
}

/// Exit 1 with one line on stderr, which contains every one of `words`; no panic.
pub fn assert_unhealthy(out: &Output, words: &[&str]) {
    let (code, stdout, stderr) = outcome(out);
    assert_eq!(code, Some(1), "stdout {stdout:?}, stderr {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr:?}");
    for word in words {
        assert!(stderr.contains(word), "{word:?} in {stderr:?}");
    }
}

/// SERVING → 0, for "" and a service by name; an unknown service → 1 naming it; during a drain →
/// 1 with NOT_SERVING and the drain's reason; after StopDrain → 0 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exits_0_when_serving_and_1_naming_the_reason_otherwise() {
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let addr = app.addr.to_string();
    assert_serving(&health(&["--addr", &addr], &[]).await);
    assert_serving(&health(&["--addr", &addr, "--service", "hotplane.v1.Patterns"], &[]).await);
    assert_unhealthy(
        &health(&["--addr", &addr, "--service", "no.such.Service"], &[]).await,
        &["\"no.such.Service\"", "NOT_FOUND", &addr],
    );

    app.drain
        .start_drain(pb::StartDrainRequest {
            reason: "node maintenance".into(),
            ..Default::default()
        })
        .await
        .expect("drain starts");
    assert_unhealthy(
        &health(&["--addr", &addr], &[]).await,
        &["NOT_SERVING", "draining", "\"node maintenance\""],
    );
    assert_unhealthy(
        &health(&["--addr", &addr, "--service", "hotplane.v1.Patterns"], &[]).await,
        &["NOT_SERVING", "hotplane.v1.Patterns"],
    );
    app.drain
        .stop_drain(pb::StopDrainRequest {})
        .await
        .expect("drain stops");
    assert_serving(&health(&["--addr", &addr], &[]).await);
    app.stop().await.expect("stops cleanly");
}

/// Without --addr the probe follows HOTPLANE_LISTEN, a wildcard host becoming loopback (the
/// container's HEALTHCHECK runs it with no flags), and reads no config file: one that does not
/// exist, named by HOTPLANE_CONFIG, does not make a healthy server look sick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_hotplane_listen_and_ignores_the_config_file() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let wildcard = format!("0.0.0.0:{}", app.addr.port());
    let out = health(
        &[],
        &[
            ("HOTPLANE_LISTEN", &wildcard),
            ("HOTPLANE_CONFIG", "/nonexistent/hotplane.toml"),
        ],
    )
    .await;
    assert_serving(&out);
    assert!(
        outcome(&out)
            .1
            .contains(&format!("127.0.0.1:{}", app.addr.port())),
        "{out:?}"
    );
    app.stop().await.expect("stops cleanly");
}

/// Nothing listening, and a listener that never answers: exit 1 with a clear reason in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_without_a_server_exits_1_with_a_clear_reason() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    }; // dropped: nothing listens there now
    let addr = closed.to_string();
    assert_unhealthy(
        &health(&["--addr", &addr], &[]).await,
        &["cannot connect to", &addr, "refused"],
    );

    // Accepts TCP connections but never speaks HTTP/2.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let started = std::time::Instant::now();
    let out = health(&["--addr", &addr, "--timeout", "500ms"], &[]).await;
    assert_unhealthy(&out, &[&addr]);
    let (_, _, stderr) = outcome(&out);
    assert!(
        stderr.contains("no answer") || stderr.contains("timed out"),
        "{stderr:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}
