//! Where a Redis connection attempt goes ([`Target`]): one Redis, the master the sentinels
//! name at the time, or the next node of a cluster. A [`Conn`](super::conn::Conn) holds one,
//! and so does its command link, which asks it for a node at every (re)connect.

use std::{sync::Arc, time::Duration};

use super::{cluster::Nodes, sentinel::Resolver};

/// Where a connection attempt goes.
// One per connection generation, cloned once into its link: boxing the client (the large
// variant, the others being a pair of `Arc`s) would save nothing that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(super) enum Target {
    /// One Redis, always the same.
    Fixed(redis::Client),
    /// The master the sentinels name at the time of each attempt.
    Sentinel(Resolver),
    /// A Redis Cluster: subscriptions on its nodes in turn, commands routed by slot.
    Cluster(Arc<Nodes>),
}

/// The node an attempt connects to.
pub(super) struct Node {
    /// A client for it.
    pub(super) client: redis::Client,
    /// Its address, `host:port`.
    pub(super) addr: String,
}

impl Target {
    /// The node to connect to now, within `timeout` (a Sentinel lookup asks the sentinels).
    pub(super) async fn node(&self, timeout: Duration) -> Result<Node, String> {
        match self {
            Target::Fixed(client) => Ok(Node {
                addr: client.get_connection_info().addr().to_string(),
                client: client.clone(),
            }),
            Target::Cluster(nodes) => {
                let (client, addr) = nodes.next();
                Ok(Node { client, addr })
            }
            Target::Sentinel(resolver) => {
                let m = resolver.master(timeout).await?;
                Ok(Node {
                    client: m.client,
                    addr: m.addr,
                })
            }
        }
    }

    /// Whether the node must be checked to be a master before it is used for commands.
    pub(super) fn is_sentinel(&self) -> bool {
        matches!(self, Target::Sentinel(_))
    }

    /// Whether this is a Redis Cluster (the fleet keys are hash-tagged).
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }
}
