//! The dashboard's HTTP routes on the admin listener, over real HTTP against a real server:
//! who gets in (no credentials → 401, read → no actions, admin → actions, the session cookie,
//! the cross-site guard, the loopback rule without credentials), `/metrics` staying open, and the
//! event stream's first message. The page itself is driven in a browser by tests/dashboard/.

use std::{net::SocketAddr, time::Duration};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    auth::{ADMIN_TOKEN, READ_TOKEN, tokens_file},
    helpers::{Backend, TestApp, learn_req},
};

/// An HTTP answer: status code, lower-cased headers, body.
struct Answer {
    code: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends one HTTP/1.1 request to `addr` (Host names `host`) and reads the answer to its end.
async fn send(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut conn = TcpStream::connect(addr).await.expect("connects to admin");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    conn.write_all(request.as_bytes()).await.expect("sends");
    let mut raw = String::new();
    conn.read_to_string(&mut raw)
        .await
        .expect("reads the answer");
    parse(&raw)
}

fn parse(raw: &str) -> Answer {
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    Answer {
        code,
        headers: headers.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    send(addr, &addr.to_string(), "GET", path, headers, "").await
}

/// A POST the page would send (with the cross-site guard header).
async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut all = vec![
        ("x-hotplane-dashboard", "1"),
        ("content-type", "application/json"),
    ];
    all.extend_from_slice(headers);
    send(addr, &addr.to_string(), "POST", path, &all, body).await
}

async fn with_tokens(dir: &std::path::Path) -> (TestApp, SocketAddr) {
    let tokens = tokens_file(dir, json!({}));
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.admin_listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.auth.auth_tokens_file = Some(tokens);
    })
    .await;
    let admin = app.admin_addr.expect("admin listener");
    (app, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_with_tokens_needs_read_for_data_and_admin_for_actions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, admin) = with_tokens(dir.path()).await;
    let read = format!("Bearer {READ_TOKEN}");
    let admin_auth = format!("Bearer {ADMIN_TOKEN}");

    // The page holds no data and loads for anyone; every data route needs credentials.
    let page = get(admin, "/", &[]).await;
    assert_eq!(page.code, 200);
    assert!(page.body.contains("/dashboard/app.js"), "{}", page.body);
    assert!(
        page.headers.contains("x-frame-options: deny"),
        "{}",
        page.headers
    );
    for path in ["/api/status", "/api/events", "/api/session"] {
        let a = get(admin, path, &[]).await;
        assert_eq!(a.code, 401, "{path} without credentials: {}", a.body);
        assert_eq!(a.json()["code"], "UNAUTHENTICATED");
    }
    let bad = get(admin, "/api/status", &[("authorization", "Bearer nope")]).await;
    assert_eq!(bad.code, 401);

    // Read: data yes, actions no (and the refused action changed nothing).
    let status = get(admin, "/api/status", &[("authorization", &read)]).await;
    assert_eq!(status.code, 200, "{}", status.body);
    assert!(
        status.json()["instance_id"]
            .as_str()
            .is_some_and(|i| !i.is_empty()),
        "{}",
        status.body
    );
    let who = get(admin, "/api/session", &[("authorization", &read)])
        .await
        .json();
    assert_eq!(
        (who["name"].as_str(), who["scope"].as_str()),
        (Some("reader"), Some("read"))
    );
    let refused = post(
        admin,
        "/api/actions/drain/start",
        &[("authorization", &read)],
        "{}",
    )
    .await;
    assert_eq!(refused.code, 403, "{}", refused.body);
    assert_eq!(refused.json()["code"], "PERMISSION_DENIED");
    let status = get(admin, "/api/status", &[("authorization", &read)])
        .await
        .json();
    assert_eq!(status["drain"]["draining"], false);

    // Admin: the action runs (the same handler as StartDrain), and shows in status.
    let started = post(
        admin,
        "/api/actions/drain/start",
        &[("authorization", &admin_auth)],
        r#"{"reason":"it"}"#,
    )
    .await;
    assert_eq!(started.code, 200, "{}", started.body);
    assert_eq!(started.json()["draining"], true);
    let status = get(admin, "/api/status", &[("authorization", &read)])
        .await
        .json();
    assert_eq!(status["drain"]["reason"], "it");

    // The cross-site guard: without the page's header, or from another origin, even admin is refused.
    let no_header = send(
        admin,
        &admin.to_string(),
        "POST",
        "/api/actions/drain/stop",
        &[("authorization", &admin_auth)],
        "{}",
    )
    .await;
    assert_eq!(no_header.code, 403, "{}", no_header.body);
    let cross = post(
        admin,
        "/api/actions/drain/stop",
        &[
            ("authorization", &admin_auth),
            ("origin", "http://evil.example"),
        ],
        "{}",
    )
    .await;
    assert_eq!(cross.code, 403, "{}", cross.body);

    // Bad input names the field; a refused gRPC call keeps its code and message.
    let bad = post(
        admin,
        "/api/actions/rollback",
        &[("authorization", &admin_auth)],
        r#"{"to_generation":"x"}"#,
    )
    .await;
    assert_eq!(bad.code, 400, "{}", bad.body);
    assert!(
        bad.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("to_generation"),
        "{}",
        bad.body
    );
    let missing = post(
        admin,
        "/api/actions/rollback",
        &[("authorization", &admin_auth)],
        r#"{"to_generation":999}"#,
    )
    .await;
    assert!(
        missing.code >= 400 && missing.code < 500,
        "{}: {}",
        missing.code,
        missing.body
    );
    assert!(
        missing.json()["code"]
            .as_str()
            .is_some_and(|c| c != "INTERNAL"),
        "{}",
        missing.body
    );

    // /metrics stays open to scrapers.
    assert_eq!(get(admin, "/metrics", &[]).await.code, 200);
    app.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_session_cookie_is_httponly_strict_and_carries_the_tokens_scopes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, admin) = with_tokens(dir.path()).await;
    let wrong = post(admin, "/api/session", &[], r#"{"token":"nope"}"#).await;
    assert_eq!(wrong.code, 401, "{}", wrong.body);
    assert!(!wrong.headers.contains("set-cookie"), "{}", wrong.headers);

    let signed = post(
        admin,
        "/api/session",
        &[],
        &json!({"token": READ_TOKEN}).to_string(),
    )
    .await;
    assert_eq!(signed.code, 200, "{}", signed.body);
    let cookie_line = signed
        .headers
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .expect("a session cookie");
    assert!(
        cookie_line.contains("httponly") && cookie_line.contains("samesite=strict"),
        "{cookie_line}"
    );
    assert!(
        !cookie_line.contains(&READ_TOKEN.to_ascii_lowercase()),
        "the cookie is not the token"
    );
    let value = cookie_line
        .trim_start_matches("set-cookie:")
        .trim()
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    // The header lines were lower-cased; session ids are lower-case hex anyway.
    let cookie = [("cookie", value.as_str())];
    assert_eq!(get(admin, "/api/status", &cookie).await.code, 200);
    let refused = post(admin, "/api/actions/reload", &cookie, "{}").await;
    assert_eq!(
        refused.code, 403,
        "a read session gets no actions: {}",
        refused.body
    );

    // Signing out ends the session.
    let out = send(
        admin,
        &admin.to_string(),
        "DELETE",
        "/api/session",
        &[cookie[0], ("x-hotplane-dashboard", "1")],
        "",
    )
    .await;
    assert_eq!(out.code, 204);
    assert_eq!(get(admin, "/api/status", &cookie).await.code, 401);
    app.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_without_credentials_answers_loopback_only() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.admin_listen = Some("0.0.0.0:0".parse().expect("addr"));
    })
    .await;
    let port = app.admin_addr.expect("admin").port();
    let local = SocketAddr::from(([127, 0, 0, 1], port));

    // Loopback: everything, actions included (admin, like the gRPC port's loopback rule).
    assert_eq!(get(local, "/", &[]).await.code, 200);
    let who = get(local, "/api/session", &[]).await.json();
    assert_eq!(who["scope"], "admin");
    assert_eq!(who["credentials_required"], false);
    let reload = post(local, "/api/actions/reload", &[], r#"{"full":true}"#).await;
    assert_eq!(reload.code, 200, "{}", reload.body);
    let sign_in = post(local, "/api/session", &[], r#"{"token":"anything"}"#).await;
    assert_eq!(
        sign_in.code, 400,
        "no session without credentials: {}",
        sign_in.body
    );

    // A page that rebinds its DNS name to 127.0.0.1 is refused by its Host.
    let rebound = send(local, "evil.example", "GET", "/api/status", &[], "").await;
    assert_eq!(rebound.code, 403, "{}", rebound.body);

    // A non-loopback peer gets nothing, not even the page, and is told why.
    let ip = non_loopback_ip().expect("this machine has a non-loopback address");
    let remote = SocketAddr::new(ip, port);
    for path in ["/", "/api/status", "/api/events"] {
        let a = get(remote, path, &[]).await;
        assert_eq!(a.code, 403, "{path} from {ip}: {}", a.body);
        assert!(a.body.contains("loopback"), "{}", a.body);
    }
    let action = post(remote, "/api/actions/drain/start", &[], "{}").await;
    assert_eq!(action.code, 403);
    app.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_events_are_server_sent_with_resumable_ids() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.admin_listen = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    app.wait_ready().await;
    let admin = app.admin_addr.expect("admin");
    let instance = get(admin, "/api/status", &[]).await.json()["instance_id"]
        .as_str()
        .expect("instance id")
        .to_owned();
    let first = first_event(admin, None).await;
    assert!(
        first.headers.contains("content-type: text/event-stream"),
        "{}",
        first.headers
    );
    assert!(first.body.contains("retry: 1000"), "{}", first.body);
    let id = first
        .body
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("an id")
        .to_owned();
    assert!(id.starts_with(&format!("{instance}:")), "{id}");
    let data: Value = serde_json::from_str(
        first
            .body
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("data"),
    )
    .expect("json");
    assert_eq!(
        (data["kind"].as_str(), data["resync"].as_bool()),
        (Some("SNAPSHOT"), Some(false))
    );
    assert!(
        data["status"]["patterns"]["current"]["generation"].as_u64() >= Some(1),
        "{data}"
    );

    // Resuming from another process's id: a snapshot, marked as a resync.
    let other = first_event(admin, Some("some-other-process:3")).await;
    let data: Value = serde_json::from_str(
        other
            .body
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("data"),
    )
    .expect("json");
    assert_eq!(
        (data["kind"].as_str(), data["resync"].as_bool()),
        (Some("SNAPSHOT"), Some(true))
    );

    // Resuming from this process's id replays exactly what came after it, no snapshot first.
    let before: u64 = id
        .rsplit_once(':')
        .and_then(|(_, n)| n.parse().ok())
        .expect("event id");
    app.patterns
        .clone()
        .learn_pattern(learn_req("quali sono i workflow attivi", "workflow", 0.95))
        .await
        .expect("learns");
    let resumed = first_event(admin, Some(&id)).await;
    let data: Value = serde_json::from_str(
        resumed
            .body
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("data"),
    )
    .expect("json");
    assert_eq!(data["id"].as_u64(), Some(before + 1), "{data}");
    assert_ne!(data["kind"], "SNAPSHOT", "{data}");
    app.stop().await.expect("stops");
}

/// Opens /api/events and reads until its first complete event.
async fn first_event(addr: SocketAddr, last_event_id: Option<&str>) -> Answer {
    let mut conn = TcpStream::connect(addr).await.expect("connects");
    let resume = last_event_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    let request = format!("GET /api/events HTTP/1.1\r\nHost: {addr}\r\n{resume}\r\n");
    conn.write_all(request.as_bytes()).await.expect("sends");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n = conn.read(&mut buf).await.expect("reads");
            assert!(n > 0, "the stream ended early");
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw);
            if let Some((_, body)) = text.split_once("\r\n\r\n")
                && body.contains("data: ")
                && body.contains("\n\n")
            {
                return;
            }
        }
    })
    .await
    .expect("the first event arrives");
    parse(&String::from_utf8_lossy(&raw))
}

/// An address of this machine that is not loopback (the one its default route uses; a UDP
/// "connect" sends nothing).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}
