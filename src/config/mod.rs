//! Configuration: where every setting comes from and what may change while serving.
//!
//! - [`flags`] (re-exported here): the typed [`Config`], parsed once from flags and
//!   `HOTPLANE_*` environment variables, and the subcommands;
//! - [`file`]: the `--config` TOML file laid over it (typed schema, key paths in every error);
//! - [`source`]: where each file key's value comes from (flag > env > file > default);
//! - [`rules`]: the one set of rules start-up and every reload check;
//! - [`live`]: the settings that change while serving, behind one `ArcSwap`;
//! - [`reload`]: the one reload (gRPC and SIGHUP) of the file and the files it names.

pub mod file;
mod flags;
pub mod live;
pub mod reload;
mod reload_files;
pub mod rules;
pub mod source;

pub use flags::*;
