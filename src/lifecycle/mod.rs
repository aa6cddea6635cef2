//! The process life cycle: drain (take this replica out of rotation without failing a request),
//! the in-flight accounting that drain waits on, and the health status both feed.

mod counts;
pub mod drain;
pub mod inflight;

pub use drain::{Drain, DrainSnapshot};
pub use inflight::InFlightLayer;
