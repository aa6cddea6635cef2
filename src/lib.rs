//! hotplane: a gRPC control plane that owns hot, in-memory state (learned query patterns,
//! configuration, connections) and changes it without restarts, dropped requests or drift.
//!
//! Modules follow the data's path: `api` (thin gRPC handlers) → `engine` (the one place where
//! served state changes) → `store` (SQL). `normalize` and `snapshot` are pure logic.

pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod broadcast;
pub mod bus;
pub mod config;
pub mod ctl;
pub mod engine;
pub mod hits;
pub mod learn;
pub mod lifecycle;
pub mod model;
pub mod normalize;
pub mod probe;
pub mod reason;
pub mod retry;
pub mod snapshot;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod writes;

/// Generated protobuf and gRPC code for `hotplane.v1`.
#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod pb {
    tonic::include_proto!("hotplane.v1");
    /// Encoded descriptor set of every hotplane proto (with comments), served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("hotplane_descriptor");
}

pub use lifecycle::signals::{Hangups, reload_config_on_sighup, shutdown_signal};
