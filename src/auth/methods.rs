//! The scope every gRPC method requires, by method path. Closed by default: a method of any
//! service not listed here (a new RPC, a new service) requires `admin`; only health and
//! reflection are open, because Kubernetes probes and grpcurl's discovery cannot send
//! credentials and reveal nothing a client could not read in the proto files.

use super::Scope;

/// What a method requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials: health checks and reflection.
    Open,
    /// The given scope.
    Scoped(Scope),
}

/// Methods that only read.
pub const READ_METHODS: &[&str] = &[
    "/hotplane.v1.Patterns/MatchPattern",
    "/hotplane.v1.Patterns/BatchMatchPatterns",
    "/hotplane.v1.Patterns/GetPattern",
    "/hotplane.v1.Patterns/ListPatterns",
    "/hotplane.v1.HotReload/GetStatus",
    "/hotplane.v1.HotReload/WatchStatus",
    "/hotplane.v1.Drain/GetDrainStatus",
];

/// Methods that change state (listed for documentation and tests: anything not open or read
/// requires `admin` anyway).
pub const ADMIN_METHODS: &[&str] = &[
    "/hotplane.v1.Patterns/LearnPattern",
    "/hotplane.v1.Patterns/ApprovePattern",
    "/hotplane.v1.Patterns/DisablePattern",
    "/hotplane.v1.Patterns/DeletePattern",
    "/hotplane.v1.HotReload/Reload",
    "/hotplane.v1.HotReload/Rollback",
    // Reads, but the audit trail says who changed what: operators only.
    "/hotplane.v1.HotReload/ListAudit",
    "/hotplane.v1.Drain/StartDrain",
    "/hotplane.v1.Drain/StopDrain",
];

/// Services open to everyone (path prefixes).
const OPEN_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The access a method path requires.
pub fn access(path: &str) -> Access {
    if OPEN_SERVICES.iter().any(|p| path.starts_with(p)) {
        Access::Open
    } else if READ_METHODS.contains(&path) {
        Access::Scoped(Scope::Read)
    } else {
        Access::Scoped(Scope::Admin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_read_writes_and_unknown_methods_are_admin_probes_are_open() {
        for m in READ_METHODS {
            assert_eq!(access(m), Access::Scoped(Scope::Read), "{m}");
        }
        for m in ADMIN_METHODS {
            assert_eq!(access(m), Access::Scoped(Scope::Admin), "{m}");
        }
        for m in [
            "/hotplane.v1.HotReload/SomethingNew",
            "/hotplane.v1.Patterns/matchpattern",
            "/hotplane.v2.Patterns/MatchPattern",
            "/hotplane.v1.Patterns/MatchPattern/",
            "/grpc.health.v1.HealthX/Check",
            "/",
            "",
        ] {
            assert_eq!(access(m), Access::Scoped(Scope::Admin), "{m:?}");
        }
        assert_eq!(access("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(access("/grpc.health.v1.Health/Watch"), Access::Open);
        assert_eq!(
            access("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            Access::Open
        );
    }

    /// Every RPC of the three services is classified on purpose, and the lists name only RPCs
    /// that exist (a typo would silently make a read RPC admin-only).
    #[test]
    fn the_lists_match_the_proto() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET)
            .expect("descriptor set decodes");
        let mut rpcs = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    rpcs.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        for m in READ_METHODS.iter().chain(ADMIN_METHODS) {
            assert!(rpcs.contains(&m.to_string()), "{m} is not an RPC");
        }
        for rpc in [
            "Reload",
            "MatchPattern",
            "StartDrain",
            "GetDrainStatus",
            "WatchStatus",
        ] {
            assert!(rpcs.iter().any(|r| r.ends_with(&format!("/{rpc}"))));
        }
    }
}
