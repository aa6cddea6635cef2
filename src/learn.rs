//! The learning rules: which proposed patterns become rows, made explicit and configurable.
//!
//! The legacy system learned a pattern when the classifier was confident enough, the category
//! was set and the normalized text was not trivially short. This module checks exactly those
//! rules (plus the column limits: hotplane's own, narrowed by the live table's, so a value the
//! table would refuse is refused here, before any SQL) and names the rule and field that
//! failed. It does no I/O.

use crate::{
    model::{MAX_METADATA_BYTES, NewPattern, PatternStatus},
    normalize::Normalizer,
    store::{ColumnLimits, TextColumn},
};

/// A proposed pattern, as received.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// Raw query text.
    pub query: String,
    /// Category.
    pub category: String,
    /// Classifier confidence.
    pub confidence: f64,
    /// JSON object or `Null`.
    pub metadata: serde_json::Value,
    /// Who proposes it; empty means "llm".
    pub created_by: String,
}

/// The configured thresholds.
#[derive(Debug, Clone)]
pub struct LearnRules {
    /// Minimum confidence, inclusive.
    pub min_confidence: f64,
    /// Minimum normalized length, in characters.
    pub min_chars: usize,
    /// Whether new rows are approved at once.
    pub auto_approve: bool,
}

/// A rule a proposal broke: the request field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Violation {
    /// The request field at fault.
    pub field: &'static str,
    /// Which rule failed, in words.
    pub reason: String,
}

impl LearnRules {
    /// Checks a proposal against the rules and the column `limits` in effect and, if it
    /// passes, returns the row to upsert.
    pub fn check(
        &self,
        p: Proposal,
        normalizer: &Normalizer,
        limits: &ColumnLimits,
    ) -> Result<NewPattern, Violation> {
        let bad = |field, reason: String| Err(Violation { field, reason });
        let query = p.query.trim();
        if query.is_empty() {
            return bad("query", "must not be empty".into());
        }
        let limit = limits.limit(TextColumn::Pattern);
        if query.chars().count() > limit.chars {
            return bad("query", limit.reason());
        }
        let category = p.category.trim();
        if category.is_empty() {
            return bad("category", "must not be empty".into());
        }
        let limit = limits.limit(TextColumn::Category);
        if category.chars().count() > limit.chars {
            return bad("category", limit.reason());
        }
        if !p.confidence.is_finite() || !(0.0..=1.0).contains(&p.confidence) {
            return bad("confidence", "must be between 0 and 1".into());
        }
        if p.confidence < self.min_confidence {
            return bad(
                "confidence",
                format!(
                    "{} is below the learning threshold {} (inclusive)",
                    p.confidence, self.min_confidence
                ),
            );
        }
        let created_by = match p.created_by.trim() {
            "" => "llm",
            s => s,
        };
        let limit = limits.limit(TextColumn::CreatedBy);
        if created_by.chars().count() > limit.chars {
            return bad("created_by", limit.reason());
        }
        if !(p.metadata.is_object() || p.metadata.is_null()) {
            return bad("metadata", "must be a JSON object".into());
        }
        if p.metadata.to_string().len() > MAX_METADATA_BYTES {
            return bad(
                "metadata",
                format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
            );
        }
        let normalized = normalizer.normalize(query);
        let len = normalized.chars().count();
        if len < self.min_chars {
            return bad(
                "query",
                format!(
                    "normalized text {normalized:?} is shorter than {} characters",
                    self.min_chars
                ),
            );
        }
        let limit = limits.limit(TextColumn::NormalizedPattern);
        if len > limit.chars {
            return bad(
                "query",
                format!(
                    "normalized text exceeds {} characters{}",
                    limit.chars,
                    limit.suffix()
                ),
            );
        }
        Ok(NewPattern {
            pattern: query.to_owned(),
            normalized_pattern: normalized,
            category: category.to_owned(),
            confidence: p.confidence,
            metadata: p.metadata,
            created_by: created_by.to_owned(),
            initial_status: if self.auto_approve {
                PatternStatus::Approved
            } else {
                PatternStatus::Pending
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::Profile;

    fn rules() -> LearnRules {
        LearnRules {
            min_confidence: 0.9,
            min_chars: 3,
            auto_approve: false,
        }
    }

    fn proposal(query: &str, category: &str, confidence: f64) -> Proposal {
        Proposal {
            query: query.into(),
            category: category.into(),
            confidence,
            metadata: serde_json::Value::Null,
            created_by: String::new(),
        }
    }

    #[test]
    fn threshold_is_inclusive_and_each_rule_names_its_field() {
        let n = Normalizer::new(Profile::PilotPros, None);
        let ok = rules()
            .check(
                proposal("Workflow attivi OGGI?", "workflow", 0.9),
                &n,
                &ColumnLimits::default(),
            )
            .expect("0.9 passes");
        assert_eq!(ok.normalized_pattern, "workflow attivi");
        assert_eq!(ok.created_by, "llm");
        assert_eq!(ok.initial_status, PatternStatus::Pending);
        let field = |p| {
            rules()
                .check(p, &n, &ColumnLimits::default())
                .expect_err("rejected")
                .field
        };
        assert_eq!(field(proposal("workflow attivi", "x", 0.899)), "confidence");
        assert_eq!(field(proposal("workflow attivi", "  ", 0.95)), "category");
        assert_eq!(field(proposal("oggi ok", "x", 0.95)), "query"); // "ok" is 2 chars
        assert_eq!(field(proposal("", "x", 0.95)), "query");
        assert_eq!(field(proposal(&"a".repeat(201), "x", 0.95)), "query");
        assert_eq!(
            field(proposal("workflow attivi", &"c".repeat(51), 0.95)),
            "category"
        );
        assert_eq!(
            field(proposal("workflow attivi", "x", f64::NAN)),
            "confidence"
        );
        let mut p = proposal("workflow attivi", "x", 0.95);
        p.metadata = serde_json::json!([1, 2]);
        assert_eq!(field(p), "metadata");
    }

    #[test]
    fn the_live_tables_narrower_limit_applies() {
        let n = Normalizer::new(Profile::PilotPros, None);
        let limits = ColumnLimits::from_declared([("created_by".to_owned(), 20)]);
        let mut p = proposal("workflow attivi", "x", 0.95);
        p.created_by = "a".repeat(21);
        let v = rules()
            .check(p.clone(), &n, &limits)
            .expect_err("over the table's 20");
        assert_eq!(v.field, "created_by");
        assert_eq!(
            v.reason,
            "must be at most 20 characters (the table's column limit)"
        );
        p.created_by = "a".repeat(20);
        assert!(rules().check(p, &n, &limits).is_ok());
    }
}
