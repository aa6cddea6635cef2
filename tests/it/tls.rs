//! TLS and mTLS on the gRPC port, and the plaintext health-only port, with certificates from a
//! throwaway private CA made by the openssl CLI.

use std::path::{Path, PathBuf};

use hotplane::{config::Config, startup::Application};
use serde_json::json;
use tokio::process::Command;
use tonic::{
    Code,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{
    auth::{ADMIN_TOKEN, Need, RPCS, call, passed, tokens_file},
    db::TestDb,
    helpers::{TestApp, wait_serving},
};

/// Runs `openssl args` in `dir`, which must succeed.
pub async fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .expect("openssl runs (./scripts/test.sh installs it)");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A private CA (P-256), a server certificate for localhost / 127.0.0.1, and client
/// certificates `CN=deployer` and `CN=viewer`.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    async fn make() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("server.ext");
        std::fs::write(
            d.join("client.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .expect("client.ext");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            d,
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=hotplane test CA",
                ],
            ]
            .concat(),
        )
        .await;
        for (name, subject, ext) in [
            ("server", "/CN=localhost", "server.ext"),
            ("deployer", "/CN=deployer", "client.ext"),
            ("viewer", "/CN=viewer", "client.ext"),
        ] {
            let (key, csr, pem) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            openssl(
                d,
                &[
                    &["req"][..],
                    &ec,
                    &["-keyout", &key, "-out", &csr, "-subj", subject],
                ]
                .concat(),
            )
            .await;
            openssl(
                d,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    ext,
                ],
            )
            .await;
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).expect("pki file")
    }

    /// Client TLS trusting the CA, presenting `client`'s certificate if given.
    fn client(&self, client: Option<&str>) -> ClientTlsConfig {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.read("ca.pem")))
            .domain_name("localhost");
        match client {
            Some(name) => tls.identity(Identity::from_pem(
                self.read(&format!("{name}.pem")),
                self.read(&format!("{name}.key")),
            )),
            None => tls,
        }
    }

    fn serve_tls(&self, c: &mut Config) {
        c.auth.tls_cert_file = Some(self.path("server.pem"));
        c.auth.tls_key_file = Some(self.path("server.key"));
    }
}

/// A server on a fresh SQLite file, its config adjusted by `tweak` (TLS on), through the test
/// kit's [`TestApp`]; its own clients reach it over TLS with `client` (at their first call).
async fn start(tweak: impl FnOnce(&mut Config), client: ClientTlsConfig) -> TestApp {
    let db = TestDb::sqlite().await;
    let mut config = Config::for_database(db.url());
    tweak(&mut config);
    TestApp::start_tls(config, db, Some(client)).await
}

/// A TLS channel to `app` (as `localhost`), or the connection error.
async fn tls_channel(
    app: &TestApp,
    tls: ClientTlsConfig,
) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("https://localhost:{}", app.addr.port()))
        .expect("uri")
        .tls_config(tls)
        .expect("client tls")
        .connect()
        .await
}

/// TLS on the gRPC port: a client trusting the CA gets every RPC (loopback default, no
/// credentials configured); a plaintext client gets nothing. The plaintext health port
/// answers health and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_every_rpc_and_the_health_port_only_health() {
    let pki = Pki::make().await;
    let server = start(
        |c| {
            pki.serve_tls(c);
            c.auth.health_listen = Some("127.0.0.1:0".parse().expect("addr"));
        },
        pki.client(None),
    )
    .await;
    let ch = tls_channel(&server, pki.client(None))
        .await
        .expect("TLS connects");
    wait_serving(&HealthClient::new(ch.clone())).await;
    // `hotplane health` with the server's environment and no flags probes the plaintext health
    // port; with a TLS option, the TLS port.
    let health_addr = server.health_addr.expect("health port").to_string();
    let env = [
        ("HOTPLANE_LISTEN", server.addr.to_string()),
        ("HOTPLANE_HEALTH_LISTEN", health_addr.clone()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = crate::probe::health(&[], &env).await;
    crate::probe::assert_serving(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&health_addr),
        "{out:?}"
    );
    let ca = pki.path("ca.pem").display().to_string();
    let out = crate::probe::health(&["--tls-ca", &ca], &env).await;
    crate::probe::assert_serving(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&server.addr.to_string()),
        "{out:?}"
    );
    for (rpc, _) in RPCS {
        let r = call(&ch, None, rpc).await;
        assert!(passed(&r), "{rpc} over TLS: {r:?}");
    }

    let plain = Channel::from_shared(format!("http://{}", server.addr))
        .expect("uri")
        .connect()
        .await;
    if let Ok(plain) = plain {
        let r = call(&plain, None, "GetStatus").await;
        assert!(r.is_err(), "plaintext must not reach the TLS port: {r:?}");
    }

    let health_addr = server.health_addr.expect("health port bound");
    let health = Channel::from_shared(format!("http://{health_addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("plaintext health");
    HealthClient::new(health.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health on the plaintext port");
    let other = call(&health, None, "GetStatus")
        .await
        .expect_err("only health there");
    assert_eq!(other.code(), Code::Unimplemented, "{other:?}");
    let reload = call(&health, None, "Reload")
        .await
        .expect_err("only health there");
    assert_eq!(reload.code(), Code::Unimplemented, "{reload:?}");
    server.stop().await.expect("stops cleanly");
}

/// mTLS: the certificate's subject is the caller; the tokens file gives `CN=deployer` admin,
/// other certificates get `--tls-client-scopes` (read). Without a certificate, no RPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_subject_is_the_caller_and_a_certificate_is_required() {
    let pki = Pki::make().await;
    let tokens = tokens_file(
        pki.dir.path(),
        json!({"clients": [{"subject": "CN=deployer", "scopes": ["admin"]}]}),
    );
    let server = start(
        |c| {
            pki.serve_tls(c);
            c.auth.tls_client_ca_file = Some(pki.path("ca.pem"));
            c.auth.auth_tokens_file = Some(tokens);
        },
        pki.client(None),
    )
    .await;
    let deployer = tls_channel(&server, pki.client(Some("deployer")))
        .await
        .expect("deployer connects");
    wait_serving(&HealthClient::new(deployer.clone())).await;
    for (rpc, _) in RPCS {
        let r = call(&deployer, None, rpc).await;
        assert!(passed(&r), "{rpc} as CN=deployer: {r:?}");
    }
    let viewer = tls_channel(&server, pki.client(Some("viewer")))
        .await
        .expect("viewer connects");
    for (rpc, need) in RPCS {
        let r = call(&viewer, None, rpc).await;
        if *need == Need::Admin {
            let err = r.expect_err(rpc);
            assert_eq!(err.code(), Code::PermissionDenied, "{rpc}: {err:?}");
            assert!(
                err.message().contains("CN=viewer"),
                "the subject is the caller: {err:?}"
            );
        } else {
            assert!(
                !matches!(&r, Err(s) if s.code() == Code::PermissionDenied),
                "{rpc}: {r:?}"
            );
        }
    }
    // No certificate: the handshake (or, with TLS 1.3, the first call) fails.
    if let Ok(anonymous) = tls_channel(&server, pki.client(None)).await {
        for rpc in ["GetStatus", "Reload"] {
            let r = call(&anonymous, Some(ADMIN_TOKEN), rpc).await;
            assert!(r.is_err(), "{rpc} without a client certificate: {r:?}");
        }
    }
    server.stop().await.expect("stops cleanly");
}

/// Optional client certificates: a connection without one needs a bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_mtls_falls_back_to_bearer_tokens() {
    let pki = Pki::make().await;
    let tokens = tokens_file(pki.dir.path(), json!({}));
    let server = start(
        |c| {
            pki.serve_tls(c);
            c.auth.tls_client_ca_file = Some(pki.path("ca.pem"));
            c.auth.tls_client_cert_optional = true;
            c.auth.auth_tokens_file = Some(tokens);
        },
        pki.client(None),
    )
    .await;
    let ch = tls_channel(&server, pki.client(None))
        .await
        .expect("connects without a certificate");
    wait_serving(&HealthClient::new(ch.clone())).await;
    assert_eq!(
        call(&ch, None, "GetStatus")
            .await
            .expect_err("no credentials")
            .code(),
        Code::Unauthenticated
    );
    call(&ch, Some(ADMIN_TOKEN), "Reload")
        .await
        .expect("bearer token over TLS");
    let viewer = tls_channel(&server, pki.client(Some("viewer")))
        .await
        .expect("viewer");
    call(&viewer, None, "GetStatus")
        .await
        .expect("certificate: read by default");
    assert_eq!(
        call(&viewer, None, "Reload")
            .await
            .expect_err("read only")
            .code(),
        Code::PermissionDenied
    );
    server.stop().await.expect("stops cleanly");
}

/// Bad TLS settings stop startup with a message naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_stop_startup_naming_the_flag() {
    let pki = Pki::make().await;
    let db = TestDb::sqlite().await;
    let mut config = Config::for_database(db.url());
    pki.serve_tls(&mut config);
    config.auth.tls_key_file = Some(pki.path("ca.pem"));
    let err = Application::build(config)
        .await
        .err()
        .expect("a certificate is not a key");
    assert!(format!("{err:#}").contains("--tls-key-file"), "{err:#}");
    let mut config = Config::for_database(db.url());
    config.auth.tls_client_ca_file = Some(pki.path("ca.pem"));
    let err = Application::build(config)
        .await
        .err()
        .expect("mTLS without TLS");
    assert!(format!("{err:#}").contains("tls-client-ca-file"), "{err:#}");
}

/// `Reload(TARGET_CONFIG)` (or SIGHUP) on the same server: the TLS files are re-read, also
/// without a config file.
async fn reload_config(
    ch: &Channel,
    validate_only: bool,
) -> Result<hotplane::pb::ReloadResponse, tonic::Status> {
    hotplane::pb::hot_reload_client::HotReloadClient::new(ch.clone())
        .reload(hotplane::pb::ReloadRequest {
            target: hotplane::pb::Target::Config.into(),
            validate_only,
            reason: "rotate".into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Certificates rotate without a restart: `Reload(TARGET_CONFIG)` re-reads the files; new
/// connections get the new certificate, open ones keep working, the answer names the change,
/// and a bad file changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_for_new_connections_and_a_bad_file_changes_nothing() {
    let (old, new) = (Pki::make().await, Pki::make().await);
    let live = tempfile::tempdir().expect("tempdir");
    let install = |pki: &Pki| {
        for f in ["server.pem", "server.key"] {
            std::fs::copy(pki.path(f), live.path().join(f)).expect("copy");
        }
    };
    install(&old);
    let server = start(
        |c| {
            c.auth.tls_cert_file = Some(live.path().join("server.pem"));
            c.auth.tls_key_file = Some(live.path().join("server.key"));
        },
        old.client(None),
    )
    .await;
    let open = tls_channel(&server, old.client(None))
        .await
        .expect("old CA");
    wait_serving(&HealthClient::new(open.clone())).await;
    let same = reload_config(&open, false)
        .await
        .expect("nothing to change");
    assert!(!same.changed && same.config_applied.is_empty(), "{same:?}");

    install(&new);
    let checked = reload_config(&open, true).await.expect("validate_only");
    assert_eq!(
        checked.config_applied[0].key, "tls.cert_file",
        "{checked:?}"
    );
    let still_old = tls_channel(&server, new.client(None)).await;
    assert!(
        match still_old {
            Ok(ch) => call(&ch, None, "GetStatus").await.is_err(),
            Err(_) => true,
        },
        "validate_only changes nothing"
    );
    let answer = reload_config(&open, false).await.expect("reload");
    let change = &answer.config_applied[0];
    assert_eq!(change.key, "tls.cert_file");
    assert!(
        change.old_value.contains("CN=localhost") && change.new_value.contains("sha256"),
        "{change:?}"
    );
    assert_ne!(change.old_value, change.new_value);
    call(&open, None, "GetStatus")
        .await
        .expect("an open connection keeps working");
    let fresh = tls_channel(&server, new.client(None))
        .await
        .expect("new CA connects");
    call(&fresh, None, "GetStatus")
        .await
        .expect("served with the new certificate");
    let stale = match tls_channel(&server, old.client(None)).await {
        Ok(ch) => call(&ch, None, "GetStatus").await.is_err(),
        Err(_) => true,
    };
    assert!(
        stale,
        "a client trusting only the old CA must not accept the new certificate"
    );

    std::fs::write(live.path().join("server.key"), "not a key").expect("break the key");
    let err = reload_config(&fresh, false)
        .await
        .expect_err("a bad key is refused");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("--tls-key-file"), "{err:?}");
    let still = tls_channel(&server, new.client(None))
        .await
        .expect("the running certificate stays");
    call(&still, None, "GetStatus").await.expect("served");
    assert!(server.tls.is_some());
    server.stop().await.expect("stops cleanly");
}

/// `hotplane health` against the TLS port: `--tls-ca` is enough for plain TLS (the certificate
/// names 127.0.0.1); without TLS options it fails with a reason; with client certificates
/// required it presents one, `--tls-server-name` checking the certificate's DNS name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_subcommand_speaks_tls_and_mtls() {
    use crate::probe::{assert_serving, assert_unhealthy, health};
    let pki = Pki::make().await;
    let ca = pki.path("ca.pem").display().to_string();
    let server = start(|c| pki.serve_tls(c), pki.client(None)).await;
    let addr = server.addr.to_string();
    let channel = tls_channel(&server, pki.client(None))
        .await
        .expect("connects");
    wait_serving(&HealthClient::new(channel)).await;
    assert_serving(&health(&["--addr", &addr, "--tls-ca", &ca], &[]).await);
    assert_unhealthy(&health(&["--addr", &addr], &[]).await, &[&addr]);
    server.stop().await.expect("stops cleanly");

    let server = start(
        |c| {
            pki.serve_tls(c);
            c.auth.tls_client_ca_file = Some(pki.path("ca.pem"));
        },
        pki.client(Some("viewer")),
    )
    .await;
    let addr = server.addr.to_string();
    let channel = tls_channel(&server, pki.client(Some("viewer")))
        .await
        .expect("connects");
    wait_serving(&HealthClient::new(channel)).await;
    let (cert, key) = (
        pki.path("viewer.pem").display().to_string(),
        pki.path("viewer.key").display().to_string(),
    );
    let by_name = format!("https://localhost:{}", server.addr.port());
    assert_serving(
        &health(
            &[
                "--addr",
                &by_name,
                "--tls-ca",
                &ca,
                "--tls-client-cert",
                &cert,
                "--tls-client-key",
                &key,
            ],
            &[],
        )
        .await,
    );
    assert_serving(
        &health(
            &[
                "--addr",
                &addr,
                "--tls-server-name",
                "localhost",
                "--tls-ca",
                &ca,
                "--tls-client-cert",
                &cert,
                "--tls-client-key",
                &key,
            ],
            &[],
        )
        .await,
    );
    // A name the certificate does not carry.
    assert_unhealthy(
        &health(
            &[
                "--addr",
                &addr,
                "--tls-server-name",
                "elsewhere.example",
                "--tls-ca",
                &ca,
                "--tls-client-cert",
                &cert,
                "--tls-client-key",
                &key,
            ],
            &[],
        )
        .await,
        &[&addr],
    );
    // No client certificate: refused (at the handshake, or at the first call with TLS 1.3).
    assert_unhealthy(
        &health(&["--addr", &addr, "--tls-ca", &ca], &[]).await,
        &[&addr],
    );
    server.stop().await.expect("stops cleanly");
}
