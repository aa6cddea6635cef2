//! Store positions: which committed store state a load read, in a form that two replicas (and
//! a client) can compare in commit order.
//!
//! A position is the [`Cursor`] of the load, as text:
//! - `pg:<xmin>:<xmax>:<xip,...>`: the load's MVCC snapshot (`pg_current_snapshot()`). It saw
//!   exactly the transactions below `xmax` that are not in `xip`. Position A *covers* B when
//!   every transaction B saw, A saw too, whatever the order of their ids: a transaction that
//!   took a low id and committed late is in B's `xip` until B's reader saw it commit.
//! - `sqlite:<n>`: the store's commit counter (SQLite serializes writers, so the counter is in
//!   commit order). A covers B when `a >= b`.
//!
//! Positions from different backends never cover each other. Positions are meaningful only
//! within one database: after a blue/green swap to another database they compare by chance.

use std::fmt;

use super::Cursor;

/// A PostgreSQL snapshot, parsed: `xmin:xmax:xip,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PgSnapshot {
    xmax: u64,
    /// Transactions in progress when the snapshot was taken (not seen), sorted.
    xip: Vec<u64>,
}

impl PgSnapshot {
    fn parse(text: &str) -> Option<PgSnapshot> {
        let mut parts = text.split(':');
        let xmin: u64 = parts.next()?.parse().ok()?;
        let xmax: u64 = parts.next()?.parse().ok()?;
        let xip_text = parts.next()?;
        if parts.next().is_some() || xmin > xmax {
            return None;
        }
        let mut xip = Vec::new();
        for x in xip_text.split(',').filter(|x| !x.is_empty()) {
            let x: u64 = x.parse().ok()?;
            if x < xmin || x >= xmax {
                return None;
            }
            xip.push(x);
        }
        xip.sort_unstable();
        Some(PgSnapshot { xmax, xip })
    }

    /// Whether this snapshot saw transaction `x` as finished.
    fn saw(&self, x: u64) -> bool {
        x < self.xmax && self.xip.binary_search(&x).is_err()
    }

    /// Whether every transaction `other` saw, this one saw too.
    fn covers(&self, other: &PgSnapshot) -> bool {
        // Ids `other` saw that this one did not: at or past our xmax (unless `other` had them
        // in progress too), or in our in-progress list.
        if other.xmax > self.xmax {
            let unseen_by_other = other.xip.iter().filter(|&&x| x >= self.xmax).count() as u64;
            if unseen_by_other != other.xmax - self.xmax {
                return false;
            }
        }
        self.xip
            .iter()
            .take_while(|&&x| x < other.xmax)
            .all(|&x| !other.saw(x))
    }
}

impl Cursor {
    /// The position as text (see the module docs).
    pub fn position(&self) -> String {
        self.to_string()
    }

    /// Parses a position written by [`Cursor::position`]; `None` for anything else.
    pub fn parse_position(text: &str) -> Option<Cursor> {
        if let Some(n) = text.strip_prefix("sqlite:") {
            return Some(Cursor::Sqlite {
                revision: n.parse().ok()?,
            });
        }
        let snapshot = text.strip_prefix("pg:")?;
        PgSnapshot::parse(snapshot)?;
        Some(Cursor::Postgres {
            snapshot: snapshot.to_owned(),
            timeline: None,
        })
    }

    /// Whether the store state read at `self` includes every commit the state read at `other`
    /// includes (commit order, not id order). `false` when they cannot be compared (different
    /// backends, or a snapshot text that does not parse).
    pub fn covers(&self, other: &Cursor) -> bool {
        match (self, other) {
            (Cursor::Sqlite { revision: a }, Cursor::Sqlite { revision: b }) => a >= b,
            (Cursor::Postgres { snapshot: a, .. }, Cursor::Postgres { snapshot: b, .. }) => {
                match (PgSnapshot::parse(a), PgSnapshot::parse(b)) {
                    (Some(a), Some(b)) => a.covers(&b),
                    _ => false,
                }
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cursor::Sqlite { revision } => write!(f, "sqlite:{revision}"),
            Cursor::Postgres { snapshot, .. } => write!(f, "pg:{snapshot}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(s: &str) -> Cursor {
        Cursor::parse_position(&format!("pg:{s}")).expect("a valid snapshot")
    }

    #[test]
    fn positions_round_trip_and_bad_text_is_refused() {
        for c in [
            pg("10:14:10,12"),
            pg("5:5:"),
            Cursor::Sqlite { revision: 7 },
        ] {
            assert_eq!(Cursor::parse_position(&c.position()), Some(c.clone()));
        }
        for bad in [
            "",
            "pg:",
            "pg:1:2",
            "pg:3:2:",
            "pg:1:5:7",
            "pg:1:5:0",
            "pg:a:b:",
            "sqlite:x",
            "mysql:3",
            "pg:1:2:3:4",
        ] {
            assert_eq!(Cursor::parse_position(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_late_commit_with_a_lower_id_is_ordered_by_commit() {
        // 10 began first and is still running; 11 committed. A read then saw 11, not 10.
        let before = pg("10:12:10");
        // 10 committed later: a later read saw both.
        let after = pg("12:12:");
        assert!(after.covers(&before));
        assert!(!before.covers(&after), "the earlier read did not see 10");
        // A reader whose xmax is above 11 but that still had 10 running is not past `after`.
        let still_running = pg("10:13:10");
        assert!(still_running.covers(&before));
        assert!(!still_running.covers(&after));
        assert!(
            !after.covers(&still_running),
            "it saw 12, which `after` did not"
        );
    }

    #[test]
    fn covering_is_reflexive_and_needs_every_seen_transaction() {
        let a = pg("20:25:21,23");
        assert!(a.covers(&a));
        // Saw 21 but not 22: neither covers the other.
        let b = pg("20:25:22,23");
        assert!(!a.covers(&b) && !b.covers(&a));
        // b's xmax is higher, but every id in between was in progress for it.
        let c = pg("20:27:21,23,25,26");
        assert!(
            a.covers(&c) && c.covers(&a),
            "both saw the same transactions"
        );
    }

    #[test]
    fn sqlite_positions_compare_by_commit_counter_and_backends_never_mix() {
        let (a, b) = (
            Cursor::Sqlite { revision: 3 },
            Cursor::Sqlite { revision: 4 },
        );
        assert!(b.covers(&a) && !a.covers(&b) && a.covers(&a));
        assert!(!pg("1:1:").covers(&a) && !a.covers(&pg("1:1:")));
    }
}
