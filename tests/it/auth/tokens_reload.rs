//! The tokens file re-read on `Reload(TARGET_CONFIG)` (and SIGHUP, which runs the same
//! function): a valid new file replaces the credentials at once; a broken one is refused,
//! naming the file and the line, and the running credentials keep working.

use hotplane::{auth::hash_token, pb, pb::hot_reload_client::HotReloadClient};
use serde_json::json;
use tonic::Code;

use super::{ADMIN_TOKEN, call, channel_to, config_reload_req, with_token};
use crate::helpers::{Backend, TestApp};

/// A token that only the rewritten file lists.
const ROTATED_TOKEN: &str = "admin-token-rotated-7c21e0";

fn write_tokens(path: &std::path::Path, token: &str) {
    let file = json!({"tokens": [
        {"name": "deployer", "sha256": hash_token(token), "scopes": ["admin"]},
    ]});
    std::fs::write(path, file.to_string()).expect("write tokens file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rereads_the_tokens_file_and_keeps_the_old_one_when_the_new_is_broken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens.json");
    write_tokens(&tokens, ADMIN_TOKEN);
    // No --config: the tokens file alone is what a config reload re-reads.
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.auth.auth_tokens_file = Some(tokens.clone())
    })
    .await;
    let ch = channel_to(app.addr).await;
    call(&ch, Some(ADMIN_TOKEN), "GetStatus")
        .await
        .expect("the first token works");

    write_tokens(&tokens, ROTATED_TOKEN);
    let answer = HotReloadClient::new(ch.clone())
        .reload(with_token(config_reload_req(), Some(ADMIN_TOKEN)))
        .await
        .expect("the reload is accepted")
        .into_inner();
    let applied: Vec<&str> = answer
        .config_applied
        .iter()
        .map(|c| c.key.as_str())
        .collect();
    assert_eq!(applied, ["auth.tokens_file"], "{answer:?}");
    call(&ch, Some(ROTATED_TOKEN), "Reload")
        .await
        .expect("the new token works");
    let refused = call(&ch, Some(ADMIN_TOKEN), "GetStatus")
        .await
        .expect_err("the old token is gone");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // A broken file (line 3 is not JSON): refused, naming the file and the line; nothing changes.
    std::fs::write(
        &tokens,
        "{\"tokens\": [\n  {\"name\": \"x\",\n   oops\n]}\n",
    )
    .expect("write");
    let err = HotReloadClient::new(ch.clone())
        .reload(with_token(config_reload_req(), Some(ROTATED_TOKEN)))
        .await
        .expect_err("a broken tokens file");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let file = tokens.display().to_string();
    assert!(
        err.message().contains(&file) && err.message().contains("line 3"),
        "{err:?}"
    );
    call(&ch, Some(ROTATED_TOKEN), "Reload")
        .await
        .expect("the running token still works");
    let health = pb::GetStatusRequest {};
    let status = HotReloadClient::new(ch.clone())
        .get_status(with_token(health, Some(ROTATED_TOKEN)))
        .await
        .expect("status")
        .into_inner();
    let config = status
        .targets
        .iter()
        .find(|t| t.target == pb::Target::Config as i32)
        .expect("a TARGET_CONFIG entry");
    assert!(config.last_error.contains(&file), "{config:?}");

    // A file that would leave no credential at all would open the server to the loopback
    // default: refused too.
    std::fs::write(&tokens, r#"{"tokens": []}"#).expect("write");
    let err = HotReloadClient::new(ch.clone())
        .reload(with_token(config_reload_req(), Some(ROTATED_TOKEN)))
        .await
        .expect_err("an empty tokens file");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let refused = call(&ch, None, "GetStatus")
        .await
        .expect_err("credentials are still required");
    assert_eq!(refused.code(), Code::Unauthenticated);
}
