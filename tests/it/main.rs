//! The one integration-test binary: every module below is a group of tests, sharing the
//! helpers in `db`.

mod binary;
mod db;
mod engine;
mod grpcurl;
mod helpers;
mod patterns_api;
mod reload;
mod store;
mod drain;
mod watch;
mod rollback;
