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
mod patterns_api;
mod properties;
mod redact;
mod reload;
mod rollback;
mod store;
mod store_swap;
mod tls;
mod watch;
