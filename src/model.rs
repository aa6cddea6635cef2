//! The pattern row as stored, and the invariants a row must hold to be served.
//!
//! This module owns the shape of `auto_learned_patterns` rows as the rest of hotplane sees them.
//! The store produces these values; the snapshot validates and indexes them. It does no I/O.

use chrono::{DateTime, Utc};

/// Longest raw pattern text, in characters (the existing deployment's column limit).
pub const MAX_PATTERN_CHARS: usize = 200;
/// Longest normalized pattern text, in characters.
pub const MAX_NORMALIZED_CHARS: usize = 200;
/// Longest category, in characters.
pub const MAX_CATEGORY_CHARS: usize = 50;
/// Longest `created_by` label, in characters.
pub const MAX_CREATED_BY_CHARS: usize = 50;
/// Largest metadata JSON document, in bytes once serialized.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Review state of a row. Stored as text (`pending`, `approved`, `disabled`); any other text read
/// from a legacy table is kept as `Other` and never served.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PatternStatus {
    /// Learned, waiting for approval: not served.
    Pending,
    /// Approved: served while `enabled`.
    Approved,
    /// Disabled by an operator: not served.
    Disabled,
    /// A value this version does not know (from a row written by someone else).
    Other(String),
}

impl PatternStatus {
    /// The text stored in the `status` column.
    pub fn as_str(&self) -> &str {
        match self {
            PatternStatus::Pending => "pending",
            PatternStatus::Approved => "approved",
            PatternStatus::Disabled => "disabled",
            PatternStatus::Other(s) => s,
        }
    }

    /// Parses the stored text; unknown values become `Other`.
    pub fn parse(s: &str) -> Self {
        match s {
            "pending" => PatternStatus::Pending,
            "approved" => PatternStatus::Approved,
            "disabled" => PatternStatus::Disabled,
            other => PatternStatus::Other(other.to_owned()),
        }
    }
}

/// One row of `auto_learned_patterns`, with every column hotplane reads.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternRow {
    /// Primary key.
    pub id: i64,
    /// Raw query text the pattern was learned from (unique).
    pub pattern: String,
    /// Normalized text that queries are matched against (not unique in legacy tables).
    pub normalized_pattern: String,
    /// Category returned on a match.
    pub category: String,
    /// Classification confidence, 0..1.
    pub confidence: f64,
    /// Times matched (flushed from memory in batches).
    pub times_used: i64,
    /// Times confirmed correct, never more than `times_used`.
    pub times_correct: i64,
    /// Recorded accuracy, 0..1.
    pub accuracy: f64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last match time, if any.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Who created the row ("llm", "manual", ...).
    pub created_by: String,
    /// Soft-delete flag.
    pub enabled: bool,
    /// Review state.
    pub status: PatternStatus,
    /// JSON payload returned with a match: the text of a JSON object as the store returns it
    /// (PostgreSQL's `jsonb` output form; SQLite's stored text), or `None`. Kept as text: parsed
    /// only when a response carries it, hashed as bytes (see BENCHMARKS.md for what a parsed
    /// `serde_json::Value` per row cost).
    pub metadata: Option<String>,
    /// Last change time.
    pub updated_at: DateTime<Utc>,
    /// Store revision of the row's last change (maintained by database triggers).
    pub revision: i64,
}

impl PatternRow {
    /// Whether the row is eligible to be served: `enabled AND status = 'approved'`.
    pub fn is_served(&self) -> bool {
        self.enabled && self.status == PatternStatus::Approved
    }

    /// Checks the invariants a served row must hold (see [`RowRef::check_invariants`]).
    pub fn check_invariants(&self) -> Result<(), String> {
        self.as_ref().check_invariants()
    }

    /// The row's served columns, borrowed.
    pub fn as_ref(&self) -> RowRef<'_> {
        RowRef {
            id: self.id,
            pattern: &self.pattern,
            normalized_pattern: &self.normalized_pattern,
            category: &self.category,
            confidence: self.confidence,
            times_used: self.times_used,
            times_correct: self.times_correct,
            accuracy: self.accuracy,
            created_at_micros: self.created_at.timestamp_micros(),
            created_by: &self.created_by,
            served: self.is_served(),
            metadata: self.metadata.as_deref(),
            revision: self.revision,
        }
    }

    /// The metadata parsed, `Null` when none.
    pub fn metadata_json(&self) -> serde_json::Value {
        metadata_json(self.metadata.as_deref())
    }
}

/// Metadata text parsed into a JSON value; `Null` for none (and, defensively, for text that
/// does not parse: stores check it when they read it).
pub fn metadata_json(text: Option<&str>) -> serde_json::Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The columns of a row that the snapshot keeps or checks, borrowed from wherever the row was
/// decoded (a [`PatternRow`], or a database row during a full load, without a copy).
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    /// Primary key.
    pub id: i64,
    /// Raw query text.
    pub pattern: &'a str,
    /// Normalized text (the lookup key).
    pub normalized_pattern: &'a str,
    /// Category.
    pub category: &'a str,
    /// Confidence, 0..1.
    pub confidence: f64,
    /// Times matched.
    pub times_used: i64,
    /// Times confirmed correct.
    pub times_correct: i64,
    /// Accuracy, 0..1.
    pub accuracy: f64,
    /// Creation time, microseconds since the Unix epoch.
    pub created_at_micros: i64,
    /// Who created the row.
    pub created_by: &'a str,
    /// `enabled AND status = 'approved'`.
    pub served: bool,
    /// Metadata JSON object text, or `None`.
    pub metadata: Option<&'a str>,
    /// Store revision of the row's last change.
    pub revision: i64,
}

impl RowRef<'_> {
    /// Checks the invariants a served row must hold. A load containing a served row that breaks
    /// one is rejected as a whole, so the error names the row and the rule.
    pub fn check_invariants(&self) -> Result<(), String> {
        let id = self.id;
        let bad = |what: &str| Err(format!("pattern id {id}: {what}"));
        if self.normalized_pattern.trim().is_empty() {
            return bad("normalized_pattern is empty");
        }
        if self.normalized_pattern.chars().count() > MAX_NORMALIZED_CHARS {
            return bad("normalized_pattern is longer than 200 characters");
        }
        if self.pattern.chars().count() > MAX_PATTERN_CHARS {
            return bad("pattern is longer than 200 characters");
        }
        if self.category.chars().count() > MAX_CATEGORY_CHARS {
            return bad("category is longer than 50 characters");
        }
        if !(0.0..=1.0).contains(&self.confidence) {
            return bad(&format!("confidence {} is outside 0..1", self.confidence));
        }
        if !(0.0..=1.0).contains(&self.accuracy) {
            return bad(&format!("accuracy {} is outside 0..1", self.accuracy));
        }
        if self.times_used < 0 || self.times_correct < 0 {
            return bad("times_used and times_correct must not be negative");
        }
        if self.times_correct > self.times_used {
            return bad(&format!(
                "times_correct {} exceeds times_used {}",
                self.times_correct, self.times_used
            ));
        }
        if let Some(m) = self.metadata
            && !m.trim_start().starts_with('{')
        {
            return bad("metadata is not a JSON object");
        }
        Ok(())
    }
}

/// Metadata text as read from a store: `None` for SQL NULL and for JSON `null`; otherwise the
/// text, which must be valid JSON (checked without building a tree). Whether it is an object is
/// an invariant of served rows ([`RowRef::check_invariants`]).
pub fn metadata_text(id: i64, text: Option<&str>) -> Result<Option<&str>, String> {
    let Some(text) = text else { return Ok(None) };
    if text.trim() == "null" {
        return Ok(None);
    }
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| format!("pattern id {id}: metadata is not valid JSON: {e}"))?;
    Ok(Some(text))
}

/// A pattern to learn, already validated against the learning rules.
#[derive(Debug, Clone)]
pub struct NewPattern {
    /// Raw query text.
    pub pattern: String,
    /// Normalized text (the upsert key).
    pub normalized_pattern: String,
    /// Category.
    pub category: String,
    /// Confidence, 0..1.
    pub confidence: f64,
    /// JSON object or `Null`.
    pub metadata: serde_json::Value,
    /// Who learned it.
    pub created_by: String,
    /// Status of a newly inserted row (`Approved` when auto-approve is on, else `Pending`).
    /// An existing row keeps its status: learning never overrides an operator's decision.
    pub initial_status: PatternStatus,
}
