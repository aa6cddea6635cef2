//! The checker: every number of the rendered objects against the container's effective hotplane
//! config ([`super::container`]) and against each other; the probes' health names asked of a
//! real server.

use std::{collections::BTreeSet, time::Duration};

use hotplane::{
    config::Config,
    lifecycle::{health, shutdown::CLOSE_GRACE},
};
use serde_json::Value;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use super::{
    container::hotplane_config,
    disagreement::Disagreement,
    manifests::{all, int_at, labels, str_at},
};
use crate::helpers::TestApp;

/// After delay + grace, the shutdown's remaining waits are each bounded by [`CLOSE_GRACE`]: the
/// last streams, the server's close, the plaintext health listener, the background tasks (given
/// at least that past the deadline) and the store's connections (`lifecycle::shutdown`).
pub const CLOSING: Duration = CLOSE_GRACE.saturating_mul(5);

/// What [`check`] found: the container's effective config (when hotplane accepts it) and every
/// disagreement.
pub struct Report {
    /// The config hotplane would run with.
    pub config: Option<Config>,
    /// Every disagreement, in check order.
    pub disagreements: Vec<Disagreement>,
}

/// The probes, by field name.
const PROBES: [&str; 3] = ["startupProbe", "readinessProbe", "livenessProbe"];

/// Checks the rendered objects `docs`; probes' health names are asked of `app` (a real server).
pub async fn check(docs: &[Value], app: &TestApp) -> Report {
    let mut out = Vec::new();
    let deployments = all(docs, "Deployment");
    let Some(deployment) = deployments.first() else {
        out.push(Disagreement::Missing("Deployment".into()));
        return Report {
            config: None,
            disagreements: out,
        };
    };
    let pod = &deployment["spec"]["template"];
    let Some(container) = pod["spec"]["containers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "hotplane"))
    else {
        out.push(Disagreement::Missing("container named hotplane".into()));
        return Report {
            config: None,
            disagreements: out,
        };
    };
    let config = hotplane_config(docs, pod, container, &mut out);

    let replicas = int_at(deployment, "/spec/replicas", 1);
    if replicas < 2 {
        out.push(Disagreement::Replicas(replicas));
    }
    if let Some(c) = &config {
        timing(pod, container, c, &mut out);
        ports(docs, container, c, &mut out);
    }
    probes(container, app, &mut out).await;
    selectors(docs, deployment, replicas, &mut out);
    user(pod, container, &mut out);
    Report {
        config,
        disagreements: out,
    }
}

/// terminationGracePeriodSeconds >= delay + grace + closing; readiness notices a drain within
/// the delay.
fn timing(pod: &Value, container: &Value, c: &Config, out: &mut Vec<Disagreement>) {
    let period_s = int_at(pod, "/spec/terminationGracePeriodSeconds", 30);
    let needed = c.shutdown_delay + c.shutdown_grace + CLOSING;
    let needed_s = i64::try_from(needed.as_millis().div_ceil(1000)).expect("seconds fit");
    if period_s < needed_s {
        out.push(Disagreement::GraceTooShort { period_s, needed_s });
    }
    let readiness = &container["readinessProbe"];
    let detect_s =
        int_at(readiness, "/periodSeconds", 10) * int_at(readiness, "/failureThreshold", 3);
    if Duration::from_secs(u64::try_from(detect_s).unwrap_or(u64::MAX)) > c.shutdown_delay {
        out.push(Disagreement::ReadinessSlowerThanDelay {
            detect_s,
            delay_ms: c.shutdown_delay.as_millis(),
        });
    }
}

/// The listener is reachable at the pod's address, and the container port, the probes' port
/// and every Service's gRPC targetPort are its port (the probes': the plaintext health port when
/// one is set, beside TLS).
fn ports(docs: &[Value], container: &Value, c: &Config, out: &mut Vec<Disagreement>) {
    if !c.listen.ip().is_unspecified() {
        out.push(Disagreement::ListenUnreachable(c.listen.to_string()));
    }
    let listen = c.listen.port();
    let container_ports: Vec<(&str, i64)> = container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (str_at(p, "/name"), int_at(p, "/containerPort", -1)))
        .collect();
    let mut expect = |what: String, port: i64, want: u16| {
        if port != i64::from(want) {
            out.push(Disagreement::Port {
                what,
                port,
                listen: want,
            });
        }
    };
    let grpc = container_ports.iter().find(|(n, _)| *n == "grpc");
    expect(
        "containerPort grpc".into(),
        grpc.map_or(-1, |p| p.1),
        listen,
    );
    let probe_port = c.auth.health_listen.map_or(listen, |a| a.port());
    for probe in PROBES {
        if let Some(grpc) = container[probe].get("grpc") {
            expect(
                format!("{probe} port"),
                int_at(grpc, "/port", -1),
                probe_port,
            );
        }
    }
    // The Services' gRPC ports (named grpc); other ports (metrics, say) serve something else.
    for service in all(docs, "Service") {
        let ports = service["spec"]["ports"].as_array().into_iter().flatten();
        let grpc: Vec<&Value> = ports.filter(|p| p["name"] == "grpc").collect();
        if grpc.is_empty() {
            let name = str_at(service, "/metadata/name");
            expect(format!("Service {name} port grpc"), -1, listen);
        }
        for p in grpc {
            let target = match &p["targetPort"] {
                Value::Null => int_at(p, "/port", -1),
                Value::String(name) => container_ports
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(-1, |p| p.1),
                other => other.as_i64().unwrap_or(-1),
            };
            let what = format!(
                "Service {} targetPort {}",
                str_at(service, "/metadata/name"),
                p["targetPort"]
            );
            expect(what, target, listen);
        }
    }
}

/// Every probe is a native grpc probe asking the health name of its meaning, and the real
/// server answers SERVING for it.
async fn probes(container: &Value, app: &TestApp, out: &mut Vec<Disagreement>) {
    for probe in PROBES {
        let Some(grpc) = container[probe].get("grpc") else {
            out.push(Disagreement::NotGrpcProbe(probe));
            continue;
        };
        let service = str_at(grpc, "/service").to_owned();
        let readiness = service.is_empty() || health::SERVICE_NAMES.contains(&service.as_str());
        let (ok, want) = match probe {
            "readinessProbe" => (readiness, "a readiness name (\"\" or a hotplane service)"),
            _ => (service == health::LIVENESS, "\"liveness\""),
        };
        if !ok {
            out.push(Disagreement::ProbeMeaning {
                probe,
                service: service.clone(),
                want,
            });
        }
        let answer = app
            .health
            .clone()
            .check(HealthCheckRequest {
                service: service.clone(),
            })
            .await;
        let answer = match answer {
            Ok(r) => match ServingStatus::try_from(r.into_inner().status) {
                Ok(ServingStatus::Serving) => continue,
                status => format!("{status:?}"),
            },
            Err(status) => format!("{:?}", status.code()),
        };
        out.push(Disagreement::HealthNotServed {
            probe,
            service,
            answer,
        });
    }
}

/// The Deployment's, the Service's and the PDB's selectors select the pods; the PDB lets at
/// least one pod go.
fn selectors(docs: &[Value], deployment: &Value, replicas: i64, out: &mut Vec<Disagreement>) {
    let pod_labels: BTreeSet<_> = labels(deployment.pointer("/spec/template/metadata/labels"))
        .into_iter()
        .collect();
    let selects = |selector: Option<&Value>| {
        let wanted = labels(selector);
        !wanted.is_empty() && wanted.iter().all(|l| pod_labels.contains(l))
    };
    if !selects(deployment.pointer("/spec/selector/matchLabels")) {
        out.push(Disagreement::Selector("Deployment"));
    }
    for service in all(docs, "Service") {
        if !selects(service.pointer("/spec/selector")) {
            out.push(Disagreement::Selector("Service"));
        }
    }
    let pdbs = all(docs, "PodDisruptionBudget");
    if pdbs.is_empty() {
        out.push(Disagreement::Missing("PodDisruptionBudget".into()));
    }
    for pdb in pdbs {
        if !selects(pdb.pointer("/spec/selector/matchLabels")) {
            out.push(Disagreement::Selector("PodDisruptionBudget"));
        }
        let count = |v: &Value| match v {
            Value::String(p) => p
                .strip_suffix('%')
                .and_then(|p| p.parse::<i64>().ok())
                .map(|p| (replicas * p + 99) / 100),
            other => other.as_i64(),
        };
        let min_available = match (
            count(&pdb["spec"]["minAvailable"]),
            count(&pdb["spec"]["maxUnavailable"]),
        ) {
            (Some(min), _) => min,
            (None, Some(max)) => replicas - max,
            (None, None) => replicas, // Kubernetes' default: nothing may be evicted
        };
        if min_available >= replicas {
            out.push(Disagreement::MinAvailable {
                min_available,
                replicas,
            });
        }
    }
}

/// The pod runs as the Dockerfile's non-root `USER`.
fn user(pod: &Value, container: &Value, out: &mut Vec<Disagreement>) {
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("reading the Dockerfile");
    let image: i64 = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .and_then(|u| u.split(':').next())
        .and_then(|uid| uid.trim().parse().ok())
        .expect("the Dockerfile has a numeric USER");
    let pick = |field: &str| {
        let c = container["securityContext"].get(field);
        c.or_else(|| pod["spec"]["securityContext"].get(field))
            .cloned()
    };
    let manifest = pick("runAsUser").and_then(|v| v.as_i64());
    let non_root = pick("runAsNonRoot").and_then(|v| v.as_bool()) == Some(true);
    if manifest != Some(image) || !non_root {
        out.push(Disagreement::RunAsUser {
            manifest,
            non_root,
            image,
        });
    }
}
