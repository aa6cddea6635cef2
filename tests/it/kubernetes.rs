//! deploy/kubernetes/ agrees with hotplane: the base and every overlay, rendered by
//! `kubectl kustomize` (installed, pinned, by `scripts/test.sh`; missing kubectl fails the
//! test), are read with the config file they mount going through hotplane's own parser, and
//! their numbers must agree with it: the termination grace covers the shutdown, readiness
//! notices a drain within the pre-stop delay, the probes ask health names the real server
//! serves with the right meaning, every port is the one hotplane listens on, the selectors
//! select the pods and the PodDisruptionBudget lets one go. Then the same checker runs on
//! mutated renderings and must name each disagreement exactly, so it can fail.
//!
//! `manifests`: rendering and parsing; `container`: the container's config as hotplane reads
//! it; `check`: the checker; `disagreement`: what it reports.

mod check;
mod container;
mod disagreement;
mod manifests;

use std::{path::Path, time::Duration};

use serde_json::Value;

use self::{
    check::{CLOSING, check},
    container::POD_IP,
    disagreement::Disagreement,
    manifests::{one_mut, render},
};
use crate::helpers::{Backend, TestApp};

const BASE: &str = "deploy/kubernetes/base";
const REDIS: &str = "deploy/kubernetes/overlays/redis";

/// Every overlay in deploy/kubernetes/overlays/ (so a new one is checked without being named
/// here).
fn overlays() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/overlays");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("an overlays/ entry").file_name())
        .map(|name| format!("deploy/kubernetes/overlays/{}", name.to_string_lossy()))
        .collect();
    found.sort();
    found
}

/// The base and every overlay agree with hotplane, and hotplane reads from them what they mean
/// to say: the shutdown timing from the ConfigMap's file, the database from the Secret, the bus
/// from the Redis overlay's Secret and `--bus-channel`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifests_agree_with_the_config_they_mount() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let overlays = overlays();
    assert!(overlays.iter().any(|o| o == REDIS), "{overlays:?}");
    for dir in &overlays {
        assert_agrees(dir, &check(&render(dir), &app).await.disagreements);
    }

    let report = check(&render(BASE), &app).await;
    assert_agrees(BASE, &report.disagreements);
    let base = report.config.expect("hotplane accepts the base's settings");
    assert_eq!(
        base.shutdown_delay,
        Duration::from_secs(10),
        "from the file"
    );
    assert_eq!(
        base.shutdown_grace,
        Duration::from_secs(20),
        "from the file"
    );
    assert!(
        base.database_url.starts_with("postgres://"),
        "from the Secret"
    );
    assert_eq!(base.listen.to_string(), "0.0.0.0:50051");
    assert_eq!(base.redis_url, None, "no bus in the base");

    let report = check(&render(REDIS), &app).await;
    let bus = report
        .config
        .expect("hotplane accepts the overlay's settings");
    assert!(
        bus.redis_url
            .as_deref()
            .is_some_and(|u| u.starts_with("redis://")),
        "from the overlay's Secret"
    );
    assert_eq!(bus.bus_channel, "hotplane:patterns:reload");
    assert!(
        bus.pinned
            .iter()
            .any(|p| p.key == "bus.channel" && p.by == "--bus-channel"),
        "the channel comes from the overlay's flag (the default has the same value): {:?}",
        bus.pinned
    );
    assert_eq!(
        bus.advertise_addr.as_deref(),
        Some(format!("{POD_IP}:50051").as_str())
    );
    assert_eq!(bus.shutdown_delay, base.shutdown_delay);
}

/// Fails with every disagreement, one per line, as an operator would read them.
fn assert_agrees(dir: &str, disagreements: &[Disagreement]) {
    let lines: Vec<String> = disagreements.iter().map(|d| format!("  {d}")).collect();
    assert!(
        lines.is_empty(),
        "{dir} disagrees with hotplane:\n{}",
        lines.join("\n")
    );
}

/// The container of the one Deployment.
fn container(docs: &mut [Value]) -> &mut Value {
    one_mut(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .and_then(|c| c.iter_mut().find(|c| c["name"] == "hotplane"))
        .expect("the hotplane container")
}

/// The container's variable `name`.
fn env<'a>(docs: &'a mut [Value], name: &str) -> &'a mut Value {
    container(docs)["env"]
        .as_array_mut()
        .and_then(|vars| vars.iter_mut().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no variable {name}"))
}

/// Replaces `from` with `to` in the mounted config file.
fn edit_file(docs: &mut [Value], from: &str, to: &str) {
    let file = &mut one_mut(docs, "ConfigMap")["data"]["hotplane.toml"];
    let text = file.as_str().expect("the config file").to_owned();
    assert!(text.contains(from), "the config file has {from:?}");
    *file = Value::from(text.replace(from, to));
}

/// A change to the rendered base, and exactly what the checker must say about it.
struct Case {
    what: &'static str,
    mutate: fn(&mut [Value]),
    expect: Vec<Disagreement>,
}

fn cases() -> Vec<Case> {
    use Disagreement::*;
    let closing_s = i64::try_from(CLOSING.as_secs()).expect("small");
    let port = |what: &str, port| Port {
        what: what.into(),
        port,
        listen: 50051,
    };
    vec![
        Case {
            what: "the grace period lowered by one second",
            mutate: |d| {
                let pod = &mut one_mut(d, "Deployment")["spec"]["template"]["spec"];
                pod["terminationGracePeriodSeconds"] = Value::from(34);
            },
            expect: vec![GraceTooShort {
                period_s: 34,
                needed_s: 10 + 20 + closing_s,
            }],
        },
        Case {
            what: "the file's shutdown.grace raised, the manifest left alone",
            mutate: |d| edit_file(d, "grace = \"20s\"", "grace = \"30s\""),
            expect: vec![GraceTooShort {
                period_s: 35,
                needed_s: 10 + 30 + closing_s,
            }],
        },
        Case {
            what: "readiness slower to notice than the delay",
            mutate: |d| container(d)["readinessProbe"]["failureThreshold"] = Value::from(6),
            expect: vec![ReadinessSlowerThanDelay {
                detect_s: 12,
                delay_ms: 10_000,
            }],
        },
        Case {
            what: "the file's shutdown.delay shortened",
            mutate: |d| edit_file(d, "delay = \"10s\"", "delay = \"3s\""),
            expect: vec![ReadinessSlowerThanDelay {
                detect_s: 4,
                delay_ms: 3_000,
            }],
        },
        Case {
            what: "readiness defaults (10 s x 3) when its numbers are removed",
            mutate: |d| {
                let probe = container(d)["readinessProbe"]
                    .as_object_mut()
                    .expect("a probe");
                probe.remove("periodSeconds");
                probe.remove("failureThreshold");
            },
            expect: vec![ReadinessSlowerThanDelay {
                detect_s: 30,
                delay_ms: 10_000,
            }],
        },
        Case {
            what: "liveness on the readiness name",
            mutate: |d| container(d)["livenessProbe"]["grpc"]["service"] = Value::from(""),
            expect: vec![ProbeMeaning {
                probe: "livenessProbe",
                service: String::new(),
                want: "\"liveness\"",
            }],
        },
        Case {
            what: "readiness on a service name hotplane does not have",
            mutate: |d| {
                container(d)["readinessProbe"]["grpc"]["service"] =
                    Value::from("hotplane.v1.Pattern")
            },
            expect: vec![
                ProbeMeaning {
                    probe: "readinessProbe",
                    service: "hotplane.v1.Pattern".into(),
                    want: "a readiness name (\"\" or a hotplane service)",
                },
                HealthNotServed {
                    probe: "readinessProbe",
                    service: "hotplane.v1.Pattern".into(),
                    answer: "NotFound".into(),
                },
            ],
        },
        Case {
            what: "an exec startup probe",
            mutate: |d| {
                container(d)["startupProbe"] =
                    serde_json::json!({"exec": {"command": ["hotplane", "health"]}});
            },
            expect: vec![NotGrpcProbe("startupProbe")],
        },
        Case {
            what: "the listener on loopback",
            mutate: |d| env(d, "HOTPLANE_LISTEN")["value"] = Value::from("127.0.0.1:50051"),
            expect: vec![ListenUnreachable("127.0.0.1:50051".into())],
        },
        Case {
            what: "a misspelled HOTPLANE_LISTEN (the default, loopback, is used)",
            mutate: |d| env(d, "HOTPLANE_LISTEN")["name"] = Value::from("HOTPLANE_LISTN"),
            expect: vec![
                UnknownVariable("HOTPLANE_LISTN".into()),
                ListenUnreachable("127.0.0.1:50051".into()),
            ],
        },
        Case {
            what: "the listener moved to another port, nothing else",
            mutate: |d| env(d, "HOTPLANE_LISTEN")["value"] = Value::from("0.0.0.0:50052"),
            expect: vec![
                Port {
                    what: "containerPort grpc".into(),
                    port: 50051,
                    listen: 50052,
                },
                Port {
                    what: "startupProbe port".into(),
                    port: 50051,
                    listen: 50052,
                },
                Port {
                    what: "readinessProbe port".into(),
                    port: 50051,
                    listen: 50052,
                },
                Port {
                    what: "livenessProbe port".into(),
                    port: 50051,
                    listen: 50052,
                },
                Port {
                    what: "Service hotplane targetPort \"grpc\"".into(),
                    port: 50051,
                    listen: 50052,
                },
            ],
        },
        Case {
            what: "the Service's targetPort a number that is not the listener's",
            mutate: |d| {
                one_mut(d, "Service")["spec"]["ports"][0]["targetPort"] = Value::from(8080);
            },
            expect: vec![port("Service hotplane targetPort 8080", 8080)],
        },
        Case {
            what: "the Service's port renamed (which of its ports is gRPC?)",
            mutate: |d| one_mut(d, "Service")["spec"]["ports"][0]["name"] = Value::from("api"),
            expect: vec![port("Service hotplane port grpc", -1)],
        },
        Case {
            what: "a variable pinning a key the file sets",
            mutate: |d| {
                container(d)["env"]
                    .as_array_mut()
                    .expect("env")
                    .push(serde_json::json!({"name": "HOTPLANE_SHUTDOWN_GRACE", "value": "20s"}));
            },
            expect: vec![Pinned {
                key: "shutdown.grace".into(),
                by: "HOTPLANE_SHUTDOWN_GRACE".into(),
            }],
        },
        Case {
            what: "the database URL from a Secret the manifests lack",
            mutate: |d| {
                let r = &mut env(d, "HOTPLANE_DATABASE_URL")["valueFrom"]["secretKeyRef"];
                r["name"] = Value::from("hotplane-db");
            },
            expect: vec![Missing("Secret hotplane-db key url".into())],
        },
        Case {
            what: "the config file mounted elsewhere",
            mutate: |d| {
                container(d)["volumeMounts"][0]["mountPath"] = Value::from("/etc/hotplane.d");
            },
            expect: vec![ConfigNotMounted("/etc/hotplane/hotplane.toml".into())],
        },
        Case {
            what: "the PDB's selector not matching the pods",
            mutate: |d| {
                let pdb = one_mut(d, "PodDisruptionBudget");
                pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] =
                    Value::from("hotplan");
            },
            expect: vec![Selector("PodDisruptionBudget")],
        },
        Case {
            what: "the PDB keeping every replica",
            mutate: |d| one_mut(d, "PodDisruptionBudget")["spec"]["minAvailable"] = Value::from(2),
            expect: vec![MinAvailable {
                min_available: 2,
                replicas: 2,
            }],
        },
        Case {
            what: "one replica",
            mutate: |d| one_mut(d, "Deployment")["spec"]["replicas"] = Value::from(1),
            expect: vec![
                Replicas(1),
                MinAvailable {
                    min_available: 1,
                    replicas: 1,
                },
            ],
        },
        Case {
            what: "root",
            mutate: |d| {
                let pod = &mut one_mut(d, "Deployment")["spec"]["template"]["spec"];
                pod["securityContext"]["runAsUser"] = Value::from(0);
            },
            expect: vec![RunAsUser {
                manifest: Some(0),
                non_root: true,
                image: 10001,
            }],
        },
    ]
}

/// Each mutation of the base is reported, exactly and alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_disagreement_is_reported_exactly() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let rendered = render(BASE);
    for case in cases() {
        let mut docs = rendered.clone();
        (case.mutate)(&mut docs);
        let report = check(&docs, &app).await;
        assert_eq!(report.disagreements, case.expect, "{}", case.what);
    }
    // A file hotplane refuses is reported with hotplane's own error, naming the key.
    let mut docs = rendered.clone();
    edit_file(&mut docs, "[shutdown]", "[shutdown]\ngrase = \"1s\"");
    let report = check(&docs, &app).await;
    match report.disagreements.as_slice() {
        [Disagreement::Config(e)] => assert!(e.contains("shutdown.grase"), "{e}"),
        other => panic!("a misspelled key: {other:?}"),
    }
}
