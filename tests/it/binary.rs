//! The `hotplane` binary as an operator runs it: defaults only (embedded SQLite file in the
//! working directory), a real process, a real SIGTERM.

use std::{path::Path, process::Stdio};

use hotplane::pb::{self, hot_reload_client::HotReloadClient};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::DEADLINE;

/// Starts the binary in `dir` with `args`, returning the child and the address it logged.
pub async fn start(dir: &Path, args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotplane"))
        .args(args)
        .current_dir(dir)
        .env("HOTPLANE_LOG_FORMAT", "json")
        .env_remove("HOTPLANE_DATABASE_URL")
        .env_remove("HOTPLANE_LISTEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("hotplane binary starts");
    let stderr = child.stderr.take().expect("stderr piped");
    let mut lines = BufReader::new(stderr).lines();
    let addr = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if v["message"] == "hotplane listening" {
                return v["addr"].as_str().expect("addr field").to_owned();
            }
        }
        panic!("hotplane exited before listening");
    })
    .await
    .expect("listening before the deadline");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_with_defaults_serves_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, addr) = start(dir.path(), &["--listen", "127.0.0.1:0"]).await;
    assert!(
        dir.path().join("hotplane.db").exists(),
        "default embedded SQLite file created"
    );

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let health = HealthClient::new(channel.clone());
    crate::helpers::wait_serving(&health).await;
    let status = HotReloadClient::new(channel.clone())
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.store.expect("store").backend, "sqlite");

    // Long-lived streams are the lifecycle work's to close (issue 4); the probe here is done.
    drop(health);
    drop(channel);
    let pid = child.id().expect("pid").to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(kill.success());
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
}
