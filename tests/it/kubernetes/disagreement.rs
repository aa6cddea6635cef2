//! The ways deploy/kubernetes/ can disagree with hotplane or with itself: what the checker
//! reports, each with the message an operator reads.

/// One way the manifests disagree with hotplane or with each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Disagreement {
    /// An object the checks need is missing.
    #[error("no {0} in the rendered manifests")]
    Missing(String),
    /// hotplane refuses the container's settings (its own error, as it would exit with).
    #[error("hotplane refuses the container's settings: {0}")]
    Config(String),
    /// A `HOTPLANE_*` variable hotplane does not read: its setting silently keeps the default.
    #[error("hotplane reads no variable {0} (a typo?)")]
    UnknownVariable(String),
    /// The config file sets a key that a variable or flag pins: the file's value is ignored.
    #[error("the config file's {key} is ignored: {by} pins it")]
    Pinned {
        /// The file key.
        key: String,
        /// The variable or flag.
        by: String,
    },
    /// `--config` names a file no volume mounts from a ConfigMap.
    #[error("the config file {0} is not mounted from a ConfigMap")]
    ConfigNotMounted(String),
    /// Fewer than two replicas: a drain or a rollout leaves none serving.
    #[error("replicas is {0}: at least 2 keep one serving through a drain")]
    Replicas(i64),
    /// terminationGracePeriodSeconds shorter than the shutdown can take: SIGKILL cuts the drain.
    #[error(
        "terminationGracePeriodSeconds is {period_s}: the shutdown (delay + grace + closing) takes up to {needed_s}"
    )]
    GraceTooShort {
        /// The pod's terminationGracePeriodSeconds.
        period_s: i64,
        /// delay + grace + [`CLOSING`], in whole seconds.
        needed_s: i64,
    },
    /// The readiness probe needs longer to see NOT_SERVING than hotplane keeps serving.
    #[error(
        "readinessProbe periodSeconds x failureThreshold is {detect_s} s, longer than shutdown.delay ({delay_ms} ms): the drain refuses work before the pod leaves the endpoints"
    )]
    ReadinessSlowerThanDelay {
        /// periodSeconds x failureThreshold.
        detect_s: i64,
        /// The shutdown delay.
        delay_ms: u128,
    },
    /// A probe is missing or is not a native `grpc:` probe.
    #[error("{0} is missing or not a native grpc probe")]
    NotGrpcProbe(&'static str),
    /// A probe asks a health name of the wrong meaning (liveness vs readiness).
    #[error("{probe} asks for {service:?}, which is not {want}")]
    ProbeMeaning {
        /// The probe.
        probe: &'static str,
        /// The health name it asks.
        service: String,
        /// What it should ask.
        want: &'static str,
    },
    /// The real server does not answer SERVING for a probe's name.
    #[error("{probe} asks for {service:?}: the server answers {answer}")]
    HealthNotServed {
        /// The probe.
        probe: &'static str,
        /// The health name.
        service: String,
        /// What the server answered.
        answer: String,
    },
    /// The listener is bound to an address the kubelet and the Service cannot reach.
    #[error("hotplane listens on {0}: not reachable at the pod's address")]
    ListenUnreachable(String),
    /// A port that must be hotplane's listening port is not.
    #[error("{what} is {port}, but hotplane listens on port {listen}")]
    Port {
        /// Which port.
        what: String,
        /// Its value (-1: missing or a name that resolves to no container port).
        port: i64,
        /// hotplane's port.
        listen: u16,
    },
    /// A selector does not select the Deployment's pods.
    #[error("the {0} selector does not match the pod labels")]
    Selector(&'static str),
    /// The PDB would block every voluntary eviction.
    #[error(
        "the PodDisruptionBudget keeps {min_available} of {replicas} replicas: no node could be drained"
    )]
    MinAvailable {
        /// Pods the PDB keeps.
        min_available: i64,
        /// The Deployment's replicas.
        replicas: i64,
    },
    /// The pod's user is not the image's non-root user.
    #[error("the pod runs as {manifest:?} (runAsNonRoot {non_root}), the image as uid {image}")]
    RunAsUser {
        /// runAsUser (container over pod).
        manifest: Option<i64>,
        /// runAsNonRoot (container over pod).
        non_root: bool,
        /// The Dockerfile's USER.
        image: i64,
    },
}
