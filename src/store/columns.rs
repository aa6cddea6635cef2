//! The text columns hotplane writes and how long their values may be: hotplane's own limits
//! (`model::MAX_*`), narrowed by the limits the live table declares.
//!
//! The live limits are read when a store is migrated (at start, by `hotplane migrate`, and for
//! the replacement store of a blue/green swap) and again when the database refuses a value as
//! too long, so validation matches the table hotplane actually has: the legacy deployment's own
//! table declares `created_by VARCHAR(20)`, not the 50 characters hotplane's migration gives a
//! fresh table. A live limit only ever narrows hotplane's own (a wider column does not make
//! hotplane accept rows that other readers of the table would not expect).
//!
//! PostgreSQL: `information_schema.columns.character_maximum_length` of the table in the
//! store's schema. SQLite: the declared type of `pragma table_info` (`VARCHAR(20)`), which SQLite
//! does not enforce but which says what a table made by another tool expects; hotplane's own
//! SQLite table declares `TEXT` and enforces its limits with CHECK constraints, so it has no
//! declared limits and hotplane's apply.
//!
//! This module does no I/O: the stores read the limits and hand them over as name/length pairs.

use crate::model::{
    MAX_CATEGORY_CHARS, MAX_CREATED_BY_CHARS, MAX_NORMALIZED_CHARS, MAX_PATTERN_CHARS,
};

/// Longest `status` text, in characters (the column of hotplane's and the legacy table).
pub const MAX_STATUS_CHARS: usize = 20;

/// A text column hotplane writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextColumn {
    /// `pattern`: the raw query text.
    Pattern,
    /// `normalized_pattern`: the lookup key.
    NormalizedPattern,
    /// `category`.
    Category,
    /// `created_by`.
    CreatedBy,
    /// `status`.
    Status,
}

impl TextColumn {
    /// Every text column hotplane writes.
    pub const ALL: [TextColumn; 5] = [
        TextColumn::Pattern,
        TextColumn::NormalizedPattern,
        TextColumn::Category,
        TextColumn::CreatedBy,
        TextColumn::Status,
    ];

    /// The column's name in the table.
    pub fn name(self) -> &'static str {
        match self {
            TextColumn::Pattern => "pattern",
            TextColumn::NormalizedPattern => "normalized_pattern",
            TextColumn::Category => "category",
            TextColumn::CreatedBy => "created_by",
            TextColumn::Status => "status",
        }
    }

    /// hotplane's own limit, in characters.
    pub fn own_limit(self) -> usize {
        match self {
            TextColumn::Pattern => MAX_PATTERN_CHARS,
            TextColumn::NormalizedPattern => MAX_NORMALIZED_CHARS,
            TextColumn::Category => MAX_CATEGORY_CHARS,
            TextColumn::CreatedBy => MAX_CREATED_BY_CHARS,
            TextColumn::Status => MAX_STATUS_CHARS,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The limit in effect for one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Most characters a value may have.
    pub chars: usize,
    /// The limit is the live table's, narrower than hotplane's own.
    pub from_table: bool,
}

impl Limit {
    /// "must be at most N characters", saying when the limit is the table's.
    pub fn reason(&self) -> String {
        format!("must be at most {} characters{}", self.chars, self.suffix())
    }

    /// " (the table's column limit)" when the table set it, else nothing.
    pub fn suffix(&self) -> &'static str {
        if self.from_table {
            " (the table's column limit)"
        } else {
            ""
        }
    }
}

/// The live table's declared limits of the text columns hotplane writes (`None`: no declared
/// limit, e.g. `TEXT`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnLimits {
    live: [Option<usize>; 5],
}

impl ColumnLimits {
    /// The limits of `(column name, declared length)` pairs; other columns are ignored.
    pub fn from_declared(declared: impl IntoIterator<Item = (String, usize)>) -> ColumnLimits {
        let mut limits = ColumnLimits::default();
        for (name, len) in declared {
            if let Some(c) = TextColumn::ALL.iter().find(|c| c.name() == name) {
                limits.live[c.index()] = Some(len);
            }
        }
        limits
    }

    /// The limit in effect for `column`: the smaller of hotplane's and the table's.
    pub fn limit(&self, column: TextColumn) -> Limit {
        let own = column.own_limit();
        match self.live[column.index()] {
            Some(live) if live < own => Limit {
                chars: live,
                from_table: true,
            },
            _ => Limit {
                chars: own,
                from_table: false,
            },
        }
    }

    /// The first of `values` longer than its column allows, with the limit it breaks.
    pub fn first_over<'a>(
        &self,
        values: impl IntoIterator<Item = (TextColumn, &'a str)>,
    ) -> Option<(TextColumn, Limit)> {
        values.into_iter().find_map(|(column, value)| {
            let limit = self.limit(column);
            (value.chars().count() > limit.chars).then_some((column, limit))
        })
    }

    /// Every declared limit of the table, as `name=chars` (for logs).
    pub fn declared(&self) -> Vec<String> {
        TextColumn::ALL
            .iter()
            .filter_map(|c| self.live[c.index()].map(|n| format!("{}={n}", c.name())))
            .collect()
    }

    /// The columns whose table limit is narrower than hotplane's, as `name=chars` (for logs).
    pub fn narrowed(&self) -> Vec<String> {
        TextColumn::ALL
            .iter()
            .map(|c| (c, self.limit(*c)))
            .filter(|(_, l)| l.from_table)
            .map(|(c, l)| format!("{}={}", c.name(), l.chars))
            .collect()
    }
}

/// The length a SQLite declared type gives, as PostgreSQL would enforce it: `VARCHAR(20)`,
/// `CHARACTER VARYING(20)`, `NVARCHAR(20)`, `CHAR(20)` (case-insensitive); `None` for anything
/// else (`TEXT`, no type).
pub fn declared_length(declared_type: &str) -> Option<usize> {
    let t = declared_type.trim().to_ascii_uppercase();
    let (name, rest) = t.split_once('(')?;
    if !name.contains("CHAR") {
        return None;
    }
    rest.strip_suffix(')')?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_limit_wins_and_says_so() {
        let limits = ColumnLimits::from_declared([
            ("created_by".to_owned(), 20),
            ("category".to_owned(), 80),
            ("other".to_owned(), 1),
        ]);
        let by = limits.limit(TextColumn::CreatedBy);
        assert_eq!(by.chars, 20);
        assert_eq!(
            by.reason(),
            "must be at most 20 characters (the table's column limit)"
        );
        // A wider column does not widen hotplane's own limit.
        assert_eq!(
            limits.limit(TextColumn::Category),
            Limit {
                chars: MAX_CATEGORY_CHARS,
                from_table: false
            }
        );
        assert_eq!(limits.narrowed(), ["created_by=20"]);
        let over = limits.first_over([
            (TextColumn::Category, "ok"),
            (TextColumn::CreatedBy, "a".repeat(21).as_str()),
        ]);
        assert_eq!(over.map(|(c, _)| c), Some(TextColumn::CreatedBy));
        assert!(
            limits
                .first_over([(TextColumn::CreatedBy, "é".repeat(20).as_str())])
                .is_none(),
            "characters, not bytes"
        );
    }

    #[test]
    fn sqlite_declared_types() {
        assert_eq!(declared_length("VARCHAR(20)"), Some(20));
        assert_eq!(declared_length("character varying( 50 )"), Some(50));
        assert_eq!(declared_length("CHAR(3)"), Some(3));
        assert_eq!(declared_length("TEXT"), None);
        assert_eq!(declared_length("DECIMAL(10)"), None);
        assert_eq!(declared_length(""), None);
    }
}
