//! The one integration-test binary: every module below is a group of tests, sharing the
//! helpers in `db`.

mod db;
mod store;
mod helpers;
mod patterns_api;
mod reload;
mod binary;
mod grpcurl;
