//! The process life cycle: drain (take this replica out of rotation without failing a request),
//! the in-flight accounting that drain waits on, the health status both feed, the signals that
//! start a shutdown or a config reload, and the shutdown sequence with its bounded waits.

mod counts;
pub mod drain;
pub mod health;
pub mod inflight;
pub mod shutdown;
pub mod signals;

pub use drain::{Drain, DrainSnapshot};
pub use inflight::InFlightLayer;
