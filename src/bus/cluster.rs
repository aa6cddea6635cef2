//! Redis Cluster: the bus on a cluster, given as `redis+cluster://` with some of its nodes.
//!
//! ```text
//! redis+cluster://[user:password@]host:port[,host:port...]
//! rediss+cluster://...   the same, over TLS to every node
//! ```
//!
//! The credentials are every node's (a cluster has one ACL per node, usually the same). List
//! several nodes: any one that answers is enough to find the others. `rediss+cluster://` is TLS
//! to every node, those listed and those the cluster names (`CLUSTER SLOTS`), verified against
//! the system's roots or `--redis-ca-file`; every node's certificate must be valid for the
//! address the cluster announces for it. There is no mixed mode: `--redis-ca-file` with a
//! `redis+cluster://` URL is refused rather than ignored.
//!
//! - **PubSub: classic `SUBSCRIBE` on any node**, not sharded PubSub (`SSUBSCRIBE`). A classic
//!   `PUBLISH` on any node is broadcast over the cluster bus to every node, so one subscription
//!   on any node hears every message, and when that node dies the subscriber simply subscribes
//!   on the next node of the URL (round robin), then runs its catch-up delta as after any
//!   reconnect. Sharded PubSub would keep messages within the channel's shard (less cluster-bus
//!   traffic), but the subscription would have to follow that shard's master through every
//!   failover and resharding; the bus sends a few small messages per change, so the broadcast
//!   costs nothing that matters, and following any live node is the simpler thing to get right.
//! - **Commands** (PUBLISH, the fleet registry) go through the redis crate's cluster connection,
//!   which routes each key to its slot's master and follows failovers and `MOVED` redirects.
//!   The fleet keys are hash-tagged on a cluster (`{<channel>}:fleet` and
//!   `{<channel>}:fleet:<id>`) so that they all live in one slot and the multi-key `MGET` of a
//!   fleet read is one command on one node.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use redis::{TlsCertificates, cluster::ClusterClient};

use super::sentinel::host_port;

/// The URL scheme of a Redis Cluster.
pub(super) const SCHEME: &str = "redis+cluster";

/// The same over TLS, to every node.
pub(super) const TLS_SCHEME: &str = "rediss+cluster";

/// Whether `url` names a Redis Cluster (by its scheme).
pub(super) fn is_cluster(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(scheme, _)| scheme.to_ascii_lowercase().ends_with("+cluster"))
}

/// A parsed `redis+cluster://` URL.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct ClusterUrl {
    /// `rediss+cluster://`: TLS to every node.
    pub(super) tls: bool,
    /// The nodes given, `host:port`.
    pub(super) nodes: Vec<(String, u16)>,
    /// The nodes' credentials, still percent-encoded as given.
    userinfo: Option<String>,
}

impl std::fmt::Debug for ClusterUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl ClusterUrl {
    /// Parses `url`; the error names what is wrong (never the password).
    pub(super) fn parse(url: &str) -> Result<ClusterUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "a cluster URL starts with redis+cluster://".to_owned())?;
        let tls = if scheme.eq_ignore_ascii_case(SCHEME) {
            false
        } else if scheme.eq_ignore_ascii_case(TLS_SCHEME) {
            true
        } else {
            return Err(format!(
                "unsupported scheme {scheme:?}: use {SCHEME}://, or {TLS_SCHEME}:// for TLS to \
                 every node"
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?']) {
            return Err(
                "a cluster URL has no path or query (a cluster has database 0 only): \
                 redis+cluster://host:6379,host2:6379"
                    .into(),
            );
        }
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (Some(authority[..at].to_owned()), &authority[at + 1..]),
            None => (None, authority),
        };
        let nodes = hosts
            .split(',')
            .map(|h| {
                if !h.is_empty() && h.rsplit_once(':').is_none_or(|(_, p)| p.contains(']')) {
                    return Err(format!("{h:?} has no port: cluster nodes are host:port"));
                }
                host_port(h)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClusterUrl {
            tls,
            nodes,
            userinfo,
        })
    }

    /// The URL with the password replaced by `***`.
    pub(super) fn redacted(&self) -> String {
        let userinfo = self.userinfo.as_deref().map(|u| match u.split_once(':') {
            Some((user, _)) => format!("{user}:***@"),
            None => format!("{u}@"),
        });
        let hosts: Vec<String> = self.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        format!(
            "{}://{}{}",
            if self.tls { TLS_SCHEME } else { SCHEME },
            userinfo.unwrap_or_default(),
            hosts.join(",")
        )
    }

    /// One `redis://` (`rediss://` with TLS) URL per node, with the credentials.
    fn node_urls(&self) -> Vec<String> {
        let userinfo = self
            .userinfo
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        self.nodes
            .iter()
            .map(|(h, p)| {
                let scheme = if self.tls { "rediss" } else { "redis" };
                format!("{scheme}://{userinfo}{h}:{p}")
            })
            .collect()
    }
}

/// The nodes of a cluster: a client per node for subscriptions (taken in turn), and the cluster
/// client for commands.
pub(super) struct Nodes {
    /// One client per node of the URL, with its address.
    nodes: Vec<(redis::Client, String)>,
    /// The next node to subscribe on.
    next: AtomicUsize,
    /// Routes commands by slot.
    pub(super) cluster: ClusterClient,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<&str> = self.nodes.iter().map(|(_, a)| a.as_str()).collect();
        f.debug_struct("Nodes")
            .field("nodes", &addrs)
            .finish_non_exhaustive()
    }
}

impl Nodes {
    /// The clients for `url`'s nodes, trusting `certs` for TLS when given.
    pub(super) fn new(
        url: &ClusterUrl,
        certs: Option<TlsCertificates>,
    ) -> Result<Arc<Nodes>, String> {
        if certs.is_some() && !url.tls {
            // `Conn::new` refuses this first; kept so that a CA is never silently dropped (the
            // crate's cluster builder would mix TLS settings with plaintext nodes).
            return Err(format!("--redis-ca-file needs TLS: use {TLS_SCHEME}://"));
        }
        let urls = url.node_urls();
        let nodes = urls
            .iter()
            .zip(&url.nodes)
            .map(|(u, (h, p))| {
                match &certs {
                    None => redis::Client::open(u.as_str()),
                    Some(c) => redis::Client::build_with_tls(u.as_str(), c.clone()),
                }
                .map(|c| (c, format!("{h}:{p}")))
                .map_err(|e| format!("the node {h}:{p}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // The nodes' `rediss://` makes every connection of the cluster client TLS, to the nodes
        // it discovers too; `certs` replaces the system's roots for all of them.
        let mut builder = ClusterClient::builder(urls);
        if let Some(c) = certs {
            builder = builder.certs(c);
        }
        let cluster = builder
            .build()
            .map_err(|e| format!("the cluster client: {e}"))?;
        Ok(Arc::new(Nodes {
            nodes,
            next: AtomicUsize::new(0),
            cluster,
        }))
    }

    /// The node to subscribe on next: each attempt takes the next node of the URL, so a dead
    /// node is left for the one after it.
    pub(super) fn next(&self) -> (redis::Client, String) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.nodes.len();
        self.nodes[i].clone()
    }
}

/// The fleet keys' prefix: `{channel}` on a cluster, so that every fleet key hashes to one slot.
pub(super) fn fleet_prefix(channel: &str, cluster: bool) -> String {
    if cluster {
        format!("{{{channel}}}")
    } else {
        channel.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_redact() {
        let u = ClusterUrl::parse("redis+cluster://bus:p%40ss@10.0.0.1:7000,node-b:7001/")
            .expect("valid");
        assert_eq!(
            u.nodes,
            vec![("10.0.0.1".to_owned(), 7000), ("node-b".to_owned(), 7001)]
        );
        assert_eq!(u.node_urls()[1], "redis://bus:p%40ss@node-b:7001");
        assert_eq!(
            u.redacted(),
            "redis+cluster://bus:***@10.0.0.1:7000,node-b:7001"
        );
        assert!(is_cluster("redis+cluster://x:1") && !is_cluster("redis://x"));
        assert!(!u.tls);
        let tls = ClusterUrl::parse("rediss+cluster://:pw@h1:7000,h2:7001").expect("valid");
        assert!(tls.tls && is_cluster("rediss+cluster://h1:7000"));
        assert_eq!(
            tls.node_urls(),
            ["rediss://:pw@h1:7000", "rediss://:pw@h2:7001"]
        );
        assert_eq!(tls.redacted(), "rediss+cluster://:***@h1:7000,h2:7001");
        let certs = TlsCertificates {
            client_tls: None,
            root_cert: Some(Vec::new()),
        };
        let refused = Nodes::new(&u, Some(certs)).expect_err("a CA without TLS");
        assert!(refused.contains("rediss+cluster://"), "{refused}");
        let scheme = ClusterUrl::parse("redis+clusters://h1:7000").expect_err("a bad scheme");
        assert!(scheme.contains("rediss+cluster://"), "{scheme}");
        let err = |u: &str| ClusterUrl::parse(u).expect_err(u);
        assert!(err("redis+cluster://h1:7000/0").contains("no path"));
        assert!(err("redis+cluster://h1").contains("no port"));
        assert!(err("redis+cluster://h1:7000,,h2:7001").contains("empty"));
        assert_eq!(fleet_prefix("ch", true), "{ch}");
        assert_eq!(fleet_prefix("ch", false), "ch");
    }
}
