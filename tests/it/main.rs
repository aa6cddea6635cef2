//! The one integration-test binary: every module below is a group of tests, sharing the
//! helpers in `db`.

mod audit;
mod auth;
mod bad_input;
mod bench;
mod binary;
mod bus;
mod config_reload;
mod db;
mod drain;
mod engine;
mod grpcurl;
mod helpers;
mod load;
mod model;
mod patterns_api;
mod properties;
mod proxy;
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
