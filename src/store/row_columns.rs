//! The pattern row's columns, declared once: the order in which every statement that reads
//! pattern rows selects them (each backend's `columns!()`, with its own casts and NULL
//! defaults, and PostgreSQL's full-load COPY, which reads the [`SERVED`] subset), and so the
//! position every decoder reads each one at. Decoders read by position (a lookup by name per
//! column and row costs more than the decoding itself in a large load), through [`Col`], never
//! through a bare number; each backend's tests check that its statements' column aliases are
//! these names in this order, so a column added in one place cannot drift from the others.

/// One column of a pattern row, in select order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    /// `id`
    Id,
    /// `pattern`
    Pattern,
    /// `normalized_pattern`
    NormalizedPattern,
    /// `category`
    Category,
    /// `confidence`
    Confidence,
    /// `times_used`
    TimesUsed,
    /// `times_correct`
    TimesCorrect,
    /// `accuracy`
    Accuracy,
    /// `created_at`
    CreatedAt,
    /// `created_by`
    CreatedBy,
    /// `metadata`
    Metadata,
    /// `revision`
    Revision,
    /// `last_used_at`
    LastUsedAt,
    /// `enabled`
    Enabled,
    /// `status`
    Status,
    /// `updated_at`
    UpdatedAt,
}

use Col::*;

impl Col {
    /// Every column, in select order.
    #[cfg(test)]
    pub const ALL: [Col; 16] = [
        Id,
        Pattern,
        NormalizedPattern,
        Category,
        Confidence,
        TimesUsed,
        TimesCorrect,
        Accuracy,
        CreatedAt,
        CreatedBy,
        Metadata,
        Revision,
        LastUsedAt,
        Enabled,
        Status,
        UpdatedAt,
    ];

    /// The column's name in the table (and its alias in every SELECT list).
    pub const fn name(self) -> &'static str {
        match self {
            Id => "id",
            Pattern => "pattern",
            NormalizedPattern => "normalized_pattern",
            Category => "category",
            Confidence => "confidence",
            TimesUsed => "times_used",
            TimesCorrect => "times_correct",
            Accuracy => "accuracy",
            CreatedAt => "created_at",
            LastUsedAt => "last_used_at",
            CreatedBy => "created_by",
            Enabled => "enabled",
            Status => "status",
            Metadata => "metadata",
            UpdatedAt => "updated_at",
            Revision => "revision",
        }
    }

    /// Its position in a row whose `columns!()` start at position `start`.
    pub const fn at(self, start: usize) -> usize {
        start + self as usize
    }

    /// Its position in a row of the [`SERVED`] columns (the full-load COPY); `None` for a column
    /// that list leaves out.
    pub const fn served_at(self) -> Option<usize> {
        // SERVED is the start of the select order (checked by a test below).
        let i = self as usize;
        if i < SERVED.len() { Some(i) } else { None }
    }
}

/// What a full load reads of each served row (it selects only served rows, so neither `enabled`
/// nor `status`, and no bookkeeping), in order: the first columns of [`Col`], so a backend's
/// full SELECT list is its served list followed by the rest.
pub const SERVED: [Col; 12] = [
    Id,
    Pattern,
    NormalizedPattern,
    Category,
    Confidence,
    TimesUsed,
    TimesCorrect,
    Accuracy,
    CreatedAt,
    CreatedBy,
    Metadata,
    Revision,
];

/// The position of `c` in a [`SERVED`] row, for a column that list has (checked when built).
pub const fn served(c: Col) -> usize {
    match c.served_at() {
        Some(i) => i,
        None => panic!("the full load does not read this column"),
    }
}

/// The column names a SELECT list gives its results, in order: each item's alias after `AS`,
/// or its bare name. For the statements' tests.
#[cfg(test)]
pub fn aliases(select_list: &str) -> Vec<String> {
    let mut items = Vec::new();
    let (mut depth, mut item) = (0, String::new());
    for ch in select_list.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        item.push(ch);
    }
    items.push(item);
    items
        .iter()
        .map(|item| {
            let words: Vec<&str> = item.split_whitespace().collect();
            match words.as_slice() {
                [.., as_, alias] if as_.eq_ignore_ascii_case("as") => (*alias).to_owned(),
                [only] => (*only).to_owned(),
                _ => format!("<no alias: {}>", item.trim()),
            }
        })
        .collect()
}

/// Every column's name, in select order: what each backend's statements are checked against.
#[cfg(test)]
pub fn names() -> Vec<&'static str> {
    Col::ALL.iter().map(|c| c.name()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_the_declared_order() {
        for (i, c) in Col::ALL.into_iter().enumerate() {
            assert_eq!(c.at(0), i);
            assert_eq!(c.at(3), i + 3);
        }
        assert_eq!(served(Id), 0);
        assert_eq!(served(Revision), SERVED.len() - 1);
        assert_eq!(Status.served_at(), None);
        // SERVED is the start of the select order.
        assert_eq!(SERVED, Col::ALL[..SERVED.len()]);
    }

    #[test]
    fn aliases_read_as_and_bare_names_at_the_top_level_only() {
        assert_eq!(
            aliases("id, COALESCE(a, 'x, y')::text AS category, CAST(b AS REAL) AS confidence"),
            ["id", "category", "confidence"]
        );
        assert_eq!(aliases("a + b"), ["<no alias: a + b>"]);
    }

    #[test]
    fn names_are_unique() {
        let mut n = names();
        n.sort_unstable();
        n.dedup();
        assert_eq!(n.len(), Col::ALL.len());
    }
}
