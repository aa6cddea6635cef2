//! `Reload` with `broadcast`: the fleet is told only of a change this replica made and serves.

use std::sync::Arc;

use hotplane::pb;
use tokio_stream::StreamExt;
use tonic::Code;

use super::{bus_config, channel, insert, redis_url};
use crate::{
    db::TestDb,
    helpers::{DEADLINE, TestApp, sql},
};

/// A broadcast reload of a row the store does not have answers NOT_FOUND and announces
/// nothing: the first message on the channel is the next, valid, broadcast's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_of_a_missing_row_is_not_announced() {
    let db = Arc::new(TestDb::sqlite().await);
    let (url, ch) = (redis_url(), channel("hotplane:broadcast-absent"));
    let mut app = TestApp::start(bus_config(&db, &url, &ch), Arc::clone(&db)).await;
    // Written with plain SQL: nothing has been announced before the subscription.
    let id = 4101;
    sql(&db, &[&insert(id, "annonce absente")]).await;
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut sub = client.get_async_pubsub().await.expect("subscribes");
    sub.subscribe(&ch).await.expect("subscribe");

    let reload = |pattern_id| pb::ReloadRequest {
        target: pb::Target::Patterns.into(),
        pattern_id: Some(pattern_id),
        broadcast: true,
        ..Default::default()
    };
    let missing = id + 1000;
    let err = app
        .reload
        .reload(reload(missing))
        .await
        .expect_err("no such row");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    app.reload.reload(reload(id)).await.expect("reload");

    let mut messages = sub.on_message();
    let first = tokio::time::timeout(DEADLINE, messages.next())
        .await
        .expect("a message before the deadline")
        .expect("stream open");
    let text: String = first.get_payload().expect("text");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["pattern_id"], id, "the first announcement: {text}");
}
