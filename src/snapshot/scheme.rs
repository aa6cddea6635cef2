//! Content-hash schemes, and how hashes from other instances compare with ours.
//!
//! A content hash covers a fixed set of columns in a fixed encoding ([`super::content_hash`]).
//! When that changes, hashes of the same content change too, so replicas of two versions would
//! see each other as diverged during a rolling upgrade. Each scheme therefore has a number,
//! reported beside every hash that leaves the process (GetStatus, fleet records, broadcast
//! rollbacks), and hashes are compared only within one scheme:
//!
//! | scheme | versions | metadata hashed as |
//! |---|---|---|
//! | 1 | before 22ad223 (unnumbered) | JSON re-serialised from the parsed document, NULL as `null` |
//! | 2 | 22ad223 and later (reported as 2 once schemes were numbered) | the store's text, as stored; NULL as nothing |
//!
//! A hash reported without a number comes from a version before numbering: scheme 1 or 2.

/// The scheme of the hashes this version computes.
pub const CURRENT: u32 = 2;

/// How two content hashes compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Same scheme (or the same digits) and the same hash: the same content.
    Same,
    /// Same scheme, different hash: different content.
    Differs,
    /// Different schemes, or an unnumbered hash whose digits differ (it may be the other
    /// scheme): the hashes say nothing about the content.
    NotComparable,
}

/// Compares hash `a` of scheme `a_scheme` with `b` of `b_scheme` (`None`: not reported).
pub fn compare(a: &str, a_scheme: Option<u32>, b: &str, b_scheme: Option<u32>) -> Comparison {
    match (a_scheme, b_scheme) {
        (Some(x), Some(y)) if x != y => Comparison::NotComparable,
        (Some(_), Some(_)) if a == b => Comparison::Same,
        (Some(_), Some(_)) => Comparison::Differs,
        // 64-bit digests of two schemes do not collide by chance: equal digits are one scheme.
        _ if a == b => Comparison::Same,
        _ => Comparison::NotComparable,
    }
}

/// Compares hash `theirs` of `their_scheme` with one of ours.
pub fn compare_with_ours(ours: &str, theirs: &str, their_scheme: Option<u32>) -> Comparison {
    compare(ours, Some(CURRENT), theirs, their_scheme)
}

#[cfg(test)]
mod tests {
    use super::{Comparison::*, compare};

    #[test]
    fn hashes_compare_only_within_one_scheme() {
        assert_eq!(compare("ab", Some(2), "ab", Some(2)), Same);
        assert_eq!(compare("ab", Some(2), "cd", Some(2)), Differs);
        // Another scheme: even equal digits say nothing.
        assert_eq!(compare("ab", Some(2), "ab", Some(3)), NotComparable);
        assert_eq!(compare("ab", Some(2), "cd", Some(3)), NotComparable);
        // Unnumbered (scheme 1 or 2): equal digits are the same content, others unknown.
        assert_eq!(compare("ab", Some(2), "ab", None), Same);
        assert_eq!(compare("ab", None, "cd", Some(2)), NotComparable);
        assert_eq!(compare("ab", None, "cd", None), NotComparable);
        assert_eq!(compare("ab", None, "ab", None), Same);
    }
}
