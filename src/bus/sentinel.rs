//! Redis Sentinel: the bus asks the sentinels where the master is at every connection attempt.
//!
//! **Configured as a URL**, so that everything that takes a Redis URL takes it (`--redis-url`,
//! `HOTPLANE_REDIS_URL`, `bus.redis_url` in the config file, and `Reload(TARGET_BUS)`, which
//! can move a running fleet from one Redis onto Sentinel and back):
//!
//! ```text
//! redis+sentinel://[user:password@]host[:port][,host[:port]...]/master-name[?db=N&username=U&password=P]
//! rediss+sentinel://...   the same, over TLS to the sentinels and to the master
//! ```
//!
//! - The hosts are the sentinels (port 26379 when left out); the credentials before them are
//!   the sentinels' own (`requirepass` / ACL user of the sentinels), like any URL's userinfo
//!   belongs to the host it precedes.
//! - The path is the master name the sentinels monitor.
//! - The query is for the master (and whichever replica becomes master): `username`,
//!   `password`, `db`. Any other key is refused, naming it.
//! - `rediss+sentinel://` is TLS to both the sentinels and the master (and whichever replica
//!   becomes master), verified against the system's roots or `--redis-ca-file`; the master's
//!   certificate must be valid for the address the sentinels name (an IP, unless the sentinels
//!   run with `announce-hostnames yes`). TLS to one side only cannot be expressed, so it can never
//!   be had by accident: a plaintext hop is always a `redis+sentinel://` URL, and
//!   `--redis-ca-file` with one is refused rather than ignored.
//!
//! **Where the bus connects is resolved per connection, never cached**: the subscriber's
//! every (re)subscribe and the command link's every (re)connect ask the sentinels for the
//! current master ([`Resolver::master`]; the redis crate asks them in order, and checks with
//! `ROLE` that the node it names really is a master). The command link checks `ROLE` again on
//! the connection it keeps (see `link`): publishing to a demoted master would reach nobody,
//! since a replica's PUBLISH stays on that replica. A master that Sentinel demotes while it is
//! alive closes its clients (Sentinel sends `CLIENT KILL TYPE normal` and `pubsub` with the
//! `REPLICAOF`), so both connections move on; and a subscriber on a master that is cut off
//! from the sentinels (the other side of a partition failed over) notices at its next PING
//! tick, where it also asks the sentinels who the master is (`subscriber`).

use std::{sync::Arc, time::Duration};

use redis::{
    IntoConnectionInfo, TlsCertificates, TlsMode,
    sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType},
};

/// The URL scheme of a Sentinel-managed Redis.
pub(super) const SCHEME: &str = "redis+sentinel";

/// The same over TLS, to the sentinels and to the master.
pub(super) const TLS_SCHEME: &str = "rediss+sentinel";

/// The sentinels' port when a host gives none.
const DEFAULT_PORT: u16 = 26379;

/// Whether `url` names a Sentinel-managed Redis (by its scheme).
pub(super) fn is_sentinel(url: &str) -> bool {
    url.split_once("://")
        .is_some_and(|(scheme, _)| scheme.to_ascii_lowercase().ends_with("+sentinel"))
}

/// A parsed `redis+sentinel://` URL.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct SentinelUrl {
    /// `rediss+sentinel://`: TLS to the sentinels and to the master.
    pub(super) tls: bool,
    /// The sentinels, `host:port`.
    pub(super) sentinels: Vec<(String, u16)>,
    /// The sentinels' credentials, still percent-encoded as given (`user:password`).
    userinfo: Option<String>,
    /// The master name.
    pub(super) master: String,
    /// The master's database.
    db: i64,
    /// The master's ACL user.
    username: Option<String>,
    /// The master's password.
    password: Option<String>,
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl SentinelUrl {
    /// Parses `url`; the error names what is wrong (never the password).
    pub(super) fn parse(url: &str) -> Result<SentinelUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "a Sentinel URL starts with redis+sentinel://".to_owned())?;
        let tls = if scheme.eq_ignore_ascii_case(SCHEME) {
            false
        } else if scheme.eq_ignore_ascii_case(TLS_SCHEME) {
            true
        } else {
            return Err(format!(
                "unsupported scheme {scheme:?}: use {SCHEME}://, or {TLS_SCHEME}:// for TLS to \
                 the sentinels and the master"
            ));
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rfind('@') {
            Some(at) => (Some(authority[..at].to_owned()), &authority[at + 1..]),
            None => (None, authority),
        };
        let sentinels = hosts
            .split(',')
            .map(host_port)
            .collect::<Result<Vec<_>, _>>()?;
        let master = percent_decode(path.trim_end_matches('/'));
        if master.is_empty() || master.contains('/') {
            return Err(
                "the URL path must be the master name: redis+sentinel://host:26379,\
                        host2:26379/mymaster"
                    .into(),
            );
        }
        let mut parsed = SentinelUrl {
            tls,
            sentinels,
            userinfo,
            master,
            db: 0,
            username: None,
            password: None,
        };
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "db" => {
                    parsed.db = value
                        .parse()
                        .map_err(|_| format!("db={value:?} is not a database number"))?;
                }
                "username" => parsed.username = Some(value.into_owned()),
                "password" => parsed.password = Some(value.into_owned()),
                other => {
                    return Err(format!(
                        "unknown query parameter {other:?}: a Sentinel URL takes db, username \
                         and password (the master's)"
                    ));
                }
            }
        }
        Ok(parsed)
    }

    /// The URL with both passwords replaced by `***`.
    pub(super) fn redacted(&self) -> String {
        let userinfo = self.userinfo.as_deref().map(|u| match u.split_once(':') {
            Some((user, _)) => format!("{user}:***@"),
            None => format!("{u}@"),
        });
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|(h, p)| format!("{h}:{p}"))
            .collect();
        let mut query = Vec::new();
        if self.db != 0 {
            query.push(format!("db={}", self.db));
        }
        if let Some(u) = &self.username {
            query.push(format!("username={u}"));
        }
        if self.password.is_some() {
            query.push("password=***".into());
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        format!(
            "{}://{}{}/{}{query}",
            self.scheme(),
            userinfo.unwrap_or_default(),
            hosts.join(","),
            self.master
        )
    }

    /// The URL's scheme, as this module spells it.
    fn scheme(&self) -> &'static str {
        if self.tls { TLS_SCHEME } else { SCHEME }
    }

    /// How to reach each sentinel (with the sentinels' credentials), `rediss://` with TLS.
    fn sentinel_urls(&self) -> Vec<String> {
        let userinfo = self
            .userinfo
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let scheme = if self.tls { "rediss" } else { "redis" };
        self.sentinels
            .iter()
            .map(|(h, p)| format!("{scheme}://{userinfo}{h}:{p}"))
            .collect()
    }

    /// The redis crate's client for the master, through the sentinels: TLS on both sides or
    /// on neither, trusting `certs` (else the system's roots) on both.
    fn client(&self, certs: Option<TlsCertificates>) -> Result<SentinelClient, String> {
        // The redis crate parses each sentinel's URL, so the credentials are percent-decoded
        // exactly as for any other Redis URL; its builder takes them apart from the address.
        let infos = self
            .sentinel_urls()
            .into_iter()
            .zip(&self.sentinels)
            .map(|(u, (h, p))| {
                u.into_connection_info()
                    .map_err(|e| format!("the sentinel {h}:{p}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let login = infos.first().map(|i| i.redis_settings().clone());
        let mut b = SentinelClientBuilder::new(
            infos.iter().map(|i| i.addr().clone()),
            &self.master,
            SentinelServerType::Master,
        )
        .map_err(|e| format!("the sentinel addresses: {e}"))?
        .set_client_to_redis_db(self.db);
        if let Some(login) = login {
            if let Some(u) = login.username() {
                b = b.set_client_to_sentinel_username(u);
            }
            if let Some(p) = login.password() {
                b = b.set_client_to_sentinel_password(p);
            }
        }
        if let Some(u) = &self.username {
            b = b.set_client_to_redis_username(u);
        }
        if let Some(p) = &self.password {
            b = b.set_client_to_redis_password(p);
        }
        if self.tls {
            b = b
                .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                .set_client_to_redis_tls_mode(TlsMode::Secure);
            if let Some(certs) = certs {
                b = b
                    .set_client_to_sentinel_certificates(certs.clone())
                    .set_client_to_redis_certificates(certs);
            }
        } else if certs.is_some() {
            // Never reached through `Conn::new`, which refuses this first; kept so that a CA
            // can never be silently dropped.
            return Err(format!(
                "--redis-ca-file needs TLS: use {TLS_SCHEME}:// (TLS to the sentinels and the \
                 master)"
            ));
        }
        b.build().map_err(|e| format!("the Sentinel client: {e}"))
    }
}

/// `host[:port]` or `[v6]:port`.
pub(super) fn host_port(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("{s:?} is not a sentinel address (host:port)");
    if s.is_empty() {
        return Err("a sentinel address is empty (a stray comma?)".into());
    }
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(bad)?;
        (format!("[{host}]"), after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (s.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(bad());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p.parse().map_err(|_| bad())?,
    };
    Ok((host, port))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The master as the sentinels name it now.
pub(super) struct Master {
    /// A client for it.
    pub(super) client: redis::Client,
    /// Its address, `host:port`.
    pub(super) addr: String,
}

/// Asks the sentinels for the master. Cheap to clone (one set of sentinel connections).
#[derive(Clone)]
pub(super) struct Resolver {
    /// The URL.
    url: Arc<SentinelUrl>,
    /// The redis crate's Sentinel client (it caches one connection per sentinel, and knows
    /// how to log in to the master, with TLS or without); `&mut` to use, so behind an async
    /// mutex: held for one lookup, which is bounded by the caller's timeout.
    sentinel: Arc<tokio::sync::Mutex<SentinelClient>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver for `url` (no connection is made yet), trusting `certs` for TLS when given.
    pub(super) fn new(
        url: SentinelUrl,
        certs: Option<TlsCertificates>,
    ) -> Result<Resolver, String> {
        let sentinel = url.client(certs)?;
        Ok(Resolver {
            url: Arc::new(url),
            sentinel: Arc::new(tokio::sync::Mutex::new(sentinel)),
        })
    }

    /// The current master, within `timeout`: the first sentinel (in the configured order) that
    /// answers and names a master that says it is one (`ROLE`).
    pub(super) async fn master(&self, timeout: Duration) -> Result<Master, String> {
        let name = &self.url.master;
        let lookup = async {
            let mut sentinel = self.sentinel.lock().await;
            sentinel.async_get_client().await
        };
        let client = match tokio::time::timeout(timeout, lookup).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(format!("asking the sentinels for master {name:?}: {e}"));
            }
            Err(_) => {
                return Err(format!(
                    "the sentinels named no master {name:?} within {timeout:?}"
                ));
            }
        };
        let addr = client.get_connection_info().addr().to_string();
        Ok(Master { client, addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_redact() {
        let u = SentinelUrl::parse(
            "redis+sentinel://sent:s%40pw@10.0.0.1:26380,sentinel-b,[::1]:26381/my%20master\
             ?db=2&username=bus&password=m%26pw",
        )
        .expect("valid");
        assert_eq!(
            u.sentinels,
            vec![
                ("10.0.0.1".to_owned(), 26380),
                ("sentinel-b".to_owned(), 26379),
                ("[::1]".to_owned(), 26381),
            ]
        );
        assert_eq!(u.master, "my master");
        assert_eq!((u.db, u.username.as_deref()), (2, Some("bus")));
        assert_eq!(u.password.as_deref(), Some("m&pw"));
        assert_eq!(
            u.sentinel_urls()[0],
            "redis://sent:s%40pw@10.0.0.1:26380",
            "the sentinels' credentials are passed on as given"
        );
        let shown = u.redacted();
        assert!(!shown.contains("pw"), "{shown}");
        assert_eq!(
            shown,
            "redis+sentinel://sent:***@10.0.0.1:26380,sentinel-b:26379,[::1]:26381/my master\
             ?db=2&username=bus&password=***"
        );
        assert!(is_sentinel("REDIS+SENTINEL://x/y") && !is_sentinel("redis://x"));
        assert!(!u.tls);
    }

    #[test]
    fn rediss_sentinel_is_tls_to_the_sentinels_and_the_master() {
        let u = SentinelUrl::parse("rediss+sentinel://:s%40pw@10.0.0.1:26380/m?password=m%26pw")
            .expect("valid");
        assert!(u.tls && is_sentinel("rediss+sentinel://x/y"));
        assert_eq!(u.sentinel_urls(), ["rediss://:s%40pw@10.0.0.1:26380"]);
        assert_eq!(
            u.redacted(),
            "rediss+sentinel://:***@10.0.0.1:26380/m?password=***"
        );
        // Both sides are TLS in the crate's client: the sentinel address it will dial, and the
        // mode it gives the master's address (checked by the integration tests, which have no
        // plaintext port to fall back to).
        u.client(None).expect("a TLS Sentinel client");
        let plain = SentinelUrl::parse("redis+sentinel://10.0.0.1/m").expect("valid");
        let certs = TlsCertificates {
            client_tls: None,
            root_cert: Some(Vec::new()),
        };
        let refused = plain.client(Some(certs)).err().expect("a CA without TLS");
        assert!(refused.contains("rediss+sentinel://"), "{refused}");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let err = |u: &str| SentinelUrl::parse(u).expect_err(u);
        assert!(err("redis+sentinel://h1:26379").contains("master name"));
        assert!(err("redis+sentinel://h1:x/m").contains("\"h1:x\""));
        assert!(err("redis+sentinel://h1,,h2/m").contains("empty"));
        assert!(err("redis+sentinel://h1/m?pasword=x").contains("\"pasword\""));
        assert!(err("redis+sentinel://h1/m?db=one").contains("db="));
        let scheme = err("redis+sentinels://h1/m");
        assert!(scheme.contains("rediss+sentinel://"), "{scheme}");
    }
}
