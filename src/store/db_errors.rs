//! What an error the database answered means for whoever asked: retry later, or fix the input
//! or the table. The API maps these to status codes (`api::error`); this module only reads the
//! driver's error (SQLSTATE on PostgreSQL, the extended result code on SQLite).
//!
//! - *Unreachable*: the database cannot serve now (connection lost, shutting down, out of
//!   connections, memory or disk). Retrying later may succeed.
//! - *Contended*: the request lost a race (serialization failure, deadlock, a lock not granted in
//!   time, SQLite busy). Retrying may succeed.
//! - *Refused*: the database refused the values written — a data error or a broken constraint
//!   (PostgreSQL SQLSTATE classes 22 and 23; SQLite's constraint, too-big, mismatch and range
//!   errors). Permanent: the same request fails again until the input or the table changes. A
//!   [`Refusal`] names the column when the error does (PostgreSQL's NOT NULL, SQLite's
//!   `table.column` and CHECK expressions); the stores fill it in where they can work it out.
//!
//! Anything else (a missing table, a syntax error, a value that does not decode) is permanent and
//! not the caller's fault.

use sqlx::{error::DatabaseError, postgres::PgDatabaseError, sqlite::SqliteError};

use super::columns::Limit;

/// What the database refused about a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Longer than the column allows (the limit once known).
    TooLong {
        /// The column's limit, when the store could read it.
        limit: Option<Limit>,
    },
    /// NULL in a NOT NULL column.
    NotNull,
    /// A CHECK constraint (or a trigger) refused it.
    Check {
        /// The constraint's name (SQLite: its expression when unnamed).
        constraint: Option<String>,
    },
    /// Another row holds the value of a unique constraint or index (or an exclusion
    /// constraint): a conflict with the table's state, not a bad value.
    Conflict {
        /// The constraint or index name.
        constraint: Option<String>,
    },
    /// A foreign key refused the change (the row is referenced, or references nothing).
    ForeignKey {
        /// The constraint name.
        constraint: Option<String>,
    },
    /// A value the column's type does not accept (out of range, wrong type, too big).
    BadValue,
}

/// A value the database refused, and the column it went into when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The column at fault, as named in the table.
    pub column: Option<String>,
    /// What is wrong.
    pub problem: Problem,
}

impl Refusal {
    /// The table's state conflicts with the change (another row, a reference), as opposed to
    /// a value the table does not accept.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self.problem,
            Problem::Conflict { .. } | Problem::ForeignKey { .. }
        )
    }

    /// What is wrong with the value, in words, without the column's name.
    pub fn reason(&self) -> String {
        let named = |kind: &str, c: &Option<String>| match c {
            Some(c) => format!("{kind} {c}"),
            None => format!("one of its {kind}s"),
        };
        match &self.problem {
            Problem::TooLong { limit: Some(l) } => l.reason(),
            Problem::TooLong { limit: None } => "is longer than the table's column allows".into(),
            Problem::NotNull => "must have a value in this table (NOT NULL)".into(),
            Problem::Check { constraint } => format!(
                "is refused by the table's {}",
                named("check constraint", constraint)
            ),
            Problem::Conflict { constraint } => format!(
                "conflicts with a row the table already holds ({})",
                named("unique constraint", constraint)
            ),
            Problem::ForeignKey { constraint } => format!(
                "is refused by the table's {}: other rows reference it or it references none",
                named("foreign key", constraint)
            ),
            Problem::BadValue => "is not a value the table's column accepts".into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let column = self.column.as_deref().unwrap_or("a value");
        write!(f, "{column} {}", self.reason())
    }
}

/// SQLite's primary result code of an extended one.
fn sqlite_primary(e: &SqliteError) -> Option<i64> {
    e.code()
        .and_then(|c| c.parse::<i64>().ok())
        .map(|c| c & 0xff)
}

/// The database cannot serve now: SQLSTATE classes 08 (connection exception), 53
/// (insufficient resources) and 57P (operator intervention: shutdown, cannot connect now), and
/// 25006 (a read-only transaction: the server is a standby, e.g. during a failover); SQLite out
/// of memory (7), I/O error (10), disk full (13), cannot open (14).
pub(super) fn unreachable(db: &dyn DatabaseError) -> bool {
    if let Some(e) = db.try_downcast_ref::<SqliteError>() {
        return matches!(sqlite_primary(e), Some(7 | 10 | 13 | 14));
    }
    db.code().is_some_and(|code| {
        code.starts_with("08")
            || code.starts_with("53")
            || code.starts_with("57P")
            || code == "25006"
    })
}

/// The request lost a race: SQLSTATE class 40 (serialization failure, deadlock), 55P03 (lock
/// not available), 57014 (canceled, e.g. by statement_timeout); SQLite busy (5) or locked (6).
pub(super) fn contended(db: &dyn DatabaseError) -> bool {
    if let Some(e) = db.try_downcast_ref::<SqliteError>() {
        return matches!(sqlite_primary(e), Some(5 | 6));
    }
    db.code()
        .is_some_and(|code| code.starts_with("40") || code == "55P03" || code == "57014")
}

/// The refusal an error reports, if it is one.
pub(super) fn refusal(e: &sqlx::Error) -> Option<Refusal> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        return pg_refusal(pg);
    }
    db.try_downcast_ref::<SqliteError>()
        .and_then(sqlite_refusal)
}

fn pg_refusal(e: &PgDatabaseError) -> Option<Refusal> {
    let code = e.code();
    let constraint = e.constraint().map(str::to_owned);
    let problem = match code {
        "22001" => Problem::TooLong { limit: None },
        "23502" => Problem::NotNull,
        "23505" | "23P01" => Problem::Conflict { constraint },
        "23503" | "23001" => Problem::ForeignKey { constraint },
        c if c.starts_with("23") => Problem::Check { constraint },
        c if c.starts_with("22") => Problem::BadValue,
        _ => return None,
    };
    Some(Refusal {
        column: e.column().map(str::to_owned),
        problem,
    })
}

/// SQLite names the column in the message: `NOT NULL constraint failed: t.column`,
/// `UNIQUE constraint failed: t.column`, `CHECK constraint failed: <name or expression>`.
fn sqlite_refusal(e: &SqliteError) -> Option<Refusal> {
    let code = e.code().and_then(|c| c.parse::<i64>().ok())?;
    let message = e.message();
    let after = message
        .split_once("constraint failed: ")
        .map(|(_, rest)| rest.trim());
    let table_column = || {
        after
            .filter(|s| !s.contains(','))
            .and_then(|s| s.rsplit('.').next())
            .map(str::to_owned)
    };
    let (column, problem) = match (code & 0xff, code) {
        (19, 1299) => (table_column(), Problem::NotNull),
        (19, 2067 | 1555) => (table_column(), Problem::Conflict { constraint: None }),
        (19, 787) => (None, Problem::ForeignKey { constraint: None }),
        (19, 275) => (
            after.and_then(column_in),
            Problem::Check {
                constraint: after.map(str::to_owned),
            },
        ),
        // A trigger's RAISE, or another constraint: its text is the schema owner's, not ours.
        (19, _) => (column_in(message), Problem::Check { constraint: None }),
        (18 | 20 | 25, _) => (None, Problem::BadValue),
        _ => return None,
    };
    Some(Refusal { column, problem })
}

/// Every column of `auto_learned_patterns`, longest first (so `normalized_pattern` is found
/// before `pattern`).
const COLUMNS: [&str; 16] = [
    "normalized_pattern",
    "times_correct",
    "last_used_at",
    "times_used",
    "created_by",
    "created_at",
    "updated_at",
    "confidence",
    "category",
    "accuracy",
    "metadata",
    "revision",
    "pattern",
    "enabled",
    "status",
    "id",
];

/// The column a CHECK's text is about: the first identifier in it that is a column
/// (`length(category) <= 10`), else a column its name contains (`category_len`).
fn column_in(text: &str) -> Option<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let found = text
        .split(|c: char| !is_ident(c))
        .find(|word| COLUMNS.contains(word))
        .or_else(|| {
            let name = text.replace("auto_learned_patterns", "");
            COLUMNS
                .iter()
                .copied()
                .find(|c| c.len() > 2 && name.contains(c))
        });
    found.map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_texts_name_their_column() {
        assert_eq!(
            column_in("length(category) <= 10").as_deref(),
            Some("category")
        );
        assert_eq!(
            column_in("trim(normalized_pattern) <> ''").as_deref(),
            Some("normalized_pattern")
        );
        assert_eq!(column_in("created_by_len").as_deref(), Some("created_by"));
        assert_eq!(
            column_in("auto_learned_patterns_category_check").as_deref(),
            Some("category")
        );
        assert_eq!(column_in("no_bots"), None);
    }

    #[test]
    fn reasons_name_the_rule_not_the_driver() {
        let r = Refusal {
            column: Some("created_by".into()),
            problem: Problem::TooLong {
                limit: Some(Limit {
                    chars: 20,
                    from_table: true,
                }),
            },
        };
        assert_eq!(
            r.to_string(),
            "created_by must be at most 20 characters (the table's column limit)"
        );
        let c = Refusal {
            column: None,
            problem: Problem::Conflict {
                constraint: Some("one_per_category".into()),
            },
        };
        assert!(c.is_conflict() && c.reason().contains("one_per_category"));
    }
}
