//! hotplane's test kit: what the integration tests (`tests/it`) and the benchmark suite
//! (`bench/`) share, so neither keeps a copy of the other's helpers.
//!
//! - [`db`]: a fresh PostgreSQL database or SQLite file per test, and a raw SQL client;
//! - [`helpers`]: [`helpers::TestApp`], the real server on a port-0 listener with generated
//!   clients, plus waiting and signalling helpers;
//! - [`pg_server`]: a private PostgreSQL primary and its streaming standbys, for failovers;
//! - [`proxy`]: a TCP proxy in front of PostgreSQL that a test can cut and restore (or point
//!   at another server: a failover's moved address);
//! - [`redis_url`]: the test Redis.
//!
//! Servers: `HOTPLANE_TEST_PG_URL` (admin URL, default the local `postgres` role) and
//! `HOTPLANE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`); `scripts/test.sh` starts both.

pub mod db;
pub mod helpers;
pub mod pg_server;
pub mod proxy;

/// The test Redis (`HOTPLANE_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`).
pub fn redis_url() -> String {
    std::env::var("HOTPLANE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}
