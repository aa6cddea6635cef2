//! The one integration-test binary: every module below is a group of tests, sharing the
//! helpers in `db`.

use hotplane_testkit::{both_backends, db, helpers, proxy};

mod audit;
mod auth;
mod bad_input;
mod binary;
mod buf_breaking;
mod bus;
mod config_reload;
mod ctl;
mod dashboard;
mod docs;
mod drain;
mod engine;
mod error_details;
mod grpcurl;
mod kubernetes;
mod liveness;
mod load;
mod lockfiles;
mod metadata_json;
mod metrics;
mod model;
mod patterns_api;
mod pg_failover;
mod probe;
mod properties;
mod redact;
mod reload;
mod response_limits;
mod revisions;
mod rollback;
mod served;
mod store;
mod store_swap;
mod table_limits;
mod tls;
mod watch;
mod writes;
