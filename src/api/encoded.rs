//! Matched patterns encoded once per generation: a row with large metadata is turned into its
//! encoded `MatchedPattern` (metadata parsed from the row's JSON text into a `Struct`) the first
//! time a match returns it, and every later answer of that generation shares those bytes.
//!
//! Rows whose metadata text is under [`MIN_CACHED_METADATA`] are encoded per match, without
//! taking the cache's lock: for them the parse costs about what the lookup would, and the match
//! path stays lock-free. The cache holds at most [`MAX_CACHED_BYTES`]; past that, rows are
//! encoded per match (still bounded per answer by `--max-response-bytes`). It holds one
//! generation: the first match on a newer one empties it, and a request still answering from an
//! older one encodes without it.

use std::{collections::HashMap, sync::Mutex};

use bytes::Bytes;
use prost::Message;

use super::convert;
use crate::{pb, snapshot::Row};

/// Metadata text length from which a matched row is encoded once per generation.
pub const MIN_CACHED_METADATA: usize = 1024;
/// Most encoded bytes the cache holds.
pub const MAX_CACHED_BYTES: usize = 64 * 1024 * 1024;

/// The encoded patterns of one generation.
#[derive(Debug, Default)]
pub struct EncodedPatterns {
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    generation: u64,
    rows: HashMap<i64, Bytes>,
    bytes: usize,
    /// Rows encoded into the cache since start (each at most once per generation).
    encoded: u64,
}

impl EncodedPatterns {
    /// `row` of `generation` as an encoded `MatchedPattern`.
    pub fn get(&self, generation: u64, row: Row<'_>) -> Bytes {
        if row.metadata().map_or(0, str::len) < MIN_CACHED_METADATA {
            return encode(row);
        }
        {
            let mut c = self.lock();
            if generation > c.generation {
                c.generation = generation;
                c.rows.clear();
                c.bytes = 0;
            }
            if generation == c.generation
                && let Some(b) = c.rows.get(&row.id())
            {
                return b.clone();
            }
        }
        // Encoded outside the lock: a large row takes a while, and other rows must not wait.
        let bytes = encode(row);
        let mut c = self.lock();
        if generation == c.generation && c.bytes + bytes.len() <= MAX_CACHED_BYTES {
            if let Some(b) = c.rows.get(&row.id()) {
                return b.clone(); // another request encoded it meanwhile
            }
            c.bytes += bytes.len();
            c.encoded += 1;
            c.rows.insert(row.id(), bytes.clone());
        }
        bytes
    }

    /// Rows encoded into the cache so far.
    #[cfg(test)]
    pub fn encoded(&self) -> u64 {
        self.lock().encoded
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding it leaves a consistent map: keep using it.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A served row as an encoded match answer (its metadata parsed from the row's JSON text).
fn encode(row: Row<'_>) -> Bytes {
    Bytes::from(matched_pb(row).encode_to_vec())
}

/// A served row as an encoded match answer with its metadata as JSON text (`metadata_json`,
/// the row's text as loaded: no parse, so nothing is worth caching).
pub fn encode_json(row: Row<'_>) -> Bytes {
    let pattern = pb::MatchedPattern {
        metadata_json: convert::json_object_text(row.metadata()),
        ..fields(row)
    };
    Bytes::from(pattern.encode_to_vec())
}

/// A served row as a match answer.
fn matched_pb(row: Row<'_>) -> pb::MatchedPattern {
    pb::MatchedPattern {
        metadata: convert::json_text_to_struct(row.metadata()),
        ..fields(row)
    }
}

/// A served row's fields of a match answer, without its metadata.
fn fields(row: Row<'_>) -> pb::MatchedPattern {
    pb::MatchedPattern {
        id: row.id(),
        normalized_pattern: row.normalized_pattern().to_owned(),
        category: row.category().to_owned(),
        confidence: row.confidence(),
        accuracy: row.accuracy(),
        metadata: None,
        metadata_json: String::new(),
    }
}
