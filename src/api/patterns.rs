//! Patterns service handlers. Matching reads only the current snapshot (never the database).
//! Writes are [`crate::writes`]'s (rules, store, serve, events, announcement): a handler here
//! checks the request, hands it over and translates the answer, naming the request's field in a
//! refusal.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{
    DEFAULT_PAGE_SIZE, MAX_BATCH_QUERIES, MAX_PAGE_SIZE, MAX_QUERY_BYTES, PatternsState, check_id,
    check_reason, convert,
    encoded::EncodedPatterns,
    error::{ApiError, ApiResult},
    matching::{Matched, Matcher},
    wire::{self, patterns_server::Patterns},
};
use crate::{
    audit,
    learn::Proposal,
    model::{MAX_CATEGORY_CHARS, PatternRow, PatternStatus},
    pb,
    store::ListQuery,
    writes::{Served, WriteError},
};

/// Patterns service.
#[derive(Debug, Clone)]
pub struct PatternsApi {
    state: Arc<PatternsState>,
    /// Matched patterns with large metadata, encoded once per generation.
    encoded: Arc<EncodedPatterns>,
}

impl PatternsApi {
    /// Handlers over the service's state.
    pub fn new(state: Arc<PatternsState>) -> Self {
        PatternsApi {
            state,
            encoded: Arc::default(),
        }
    }

    /// Answers `queries` from the current generation (one snapshot and one normalizer for the
    /// whole request), bounded by `--max-response-bytes` (see [`matching`]); returns the
    /// answers and the generation number.
    fn match_queries(
        &self,
        queries: &[String],
        min_confidence: Option<f64>,
        min_generation: u64,
        batch: bool,
        metadata_as_json: bool,
    ) -> ApiResult<(Vec<Matched>, u64)> {
        let generation = self.state.engine.current();
        check_min_generation(generation.number, min_generation)?;
        let settings = self.state.live.settings();
        let matcher = Matcher {
            normalizer: &settings.normalizer,
            snapshot: &generation.snapshot,
            min_confidence,
            max_bytes: self.state.max_response_bytes,
            generation: generation.number,
            encoded: &self.encoded,
            metadata_as_json,
        };
        let answers = matcher.answer(queries, batch, &self.state.hits)?;
        Ok((answers, generation.number))
    }

    /// ApprovePattern (`enabled`) and DisablePattern: checks the request, writes, answers the
    /// row as stored.
    async fn set_status(
        &self,
        id: i64,
        enabled: bool,
        reason: &str,
        caller: String,
        metadata_as_json: bool,
    ) -> ApiResult<(pb::Pattern, Served)> {
        check_id(id)?;
        check_reason(reason)?;
        let (row, write) = self
            .state
            .writes
            .set_status(id, enabled, reason, caller)
            .await
            .map_err(|e| write_error(e, &[]))?;
        Ok((pattern_pb(&row, metadata_as_json), write))
    }
}

impl PatternsState {
    fn store(&self) -> std::sync::Arc<crate::store::Store> {
        self.engine.store()
    }
}

/// The LearnPattern request field behind each column a learn writes: a value the table refuses
/// in one of these is the caller's to fix.
const LEARN_FIELDS: &[(&str, &str)] = &[
    ("pattern", "query"),
    ("normalized_pattern", "query"),
    ("category", "category"),
    ("confidence", "confidence"),
    ("created_by", "created_by"),
    ("metadata", "metadata"),
];

fn not_found(id: i64) -> ApiError {
    ApiError::pattern_not_found(id, format!("pattern {id} does not exist"))
}

/// A write's failure as answered: a refused value under the request field `fields` maps its
/// column to (none for status changes and deletes: a refusal there is the table's state), a
/// missing row as PATTERN_NOT_FOUND.
fn write_error(e: WriteError, fields: &[(&str, &'static str)]) -> ApiError {
    match e {
        WriteError::Rejected(v) => v.into(),
        WriteError::NotFound(id) => not_found(id),
        WriteError::Store(e) => ApiError::from_store_write(e, fields),
        WriteError::Serve(e) => e.into(),
    }
}

fn check_query(field: &str, query: &str) -> ApiResult<()> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("is {} bytes; the limit is {MAX_QUERY_BYTES}", query.len()),
        ));
    }
    Ok(())
}

fn check_min_confidence(min: Option<f64>) -> ApiResult<()> {
    match min {
        Some(m) if !(0.0..=1.0).contains(&m) => Err(ApiError::invalid(
            "min_confidence",
            "must be between 0 and 1",
        )),
        _ => Ok(()),
    }
}

fn check_min_generation(served: u64, wanted: u64) -> ApiResult<()> {
    if wanted > served {
        return Err(ApiError::generation_behind(served, wanted));
    }
    Ok(())
}

fn status_pb(s: &PatternStatus) -> pb::PatternStatus {
    match s {
        PatternStatus::Pending => pb::PatternStatus::Pending,
        PatternStatus::Approved => pb::PatternStatus::Approved,
        PatternStatus::Disabled => pb::PatternStatus::Disabled,
        PatternStatus::Other(_) => pb::PatternStatus::Unspecified,
    }
}

/// A row as answered, its metadata as a `Struct` or, with `metadata_as_json`, as JSON text.
fn pattern_pb(row: &PatternRow, metadata_as_json: bool) -> pb::Pattern {
    let metadata = row.metadata.as_deref();
    let (metadata, metadata_json) = if metadata_as_json {
        (None, convert::json_object_text(metadata))
    } else {
        (convert::json_text_to_struct(metadata), String::new())
    };
    pb::Pattern {
        id: row.id,
        pattern: row.pattern.clone(),
        normalized_pattern: row.normalized_pattern.clone(),
        category: row.category.clone(),
        confidence: row.confidence,
        times_used: row.times_used,
        times_correct: row.times_correct,
        accuracy: row.accuracy,
        created_at: Some(convert::timestamp(row.created_at)),
        last_used_at: row.last_used_at.map(convert::timestamp),
        created_by: row.created_by.clone(),
        enabled: row.enabled,
        status: status_pb(&row.status).into(),
        metadata,
        updated_at: Some(convert::timestamp(row.updated_at)),
        revision: row.revision,
        metadata_json,
    }
}

/// A LearnPattern request's metadata, from whichever form it was sent in, and the name of the
/// field it came from (which the learning rules' and the table's refusals then name).
fn proposed_metadata(
    req: &pb::LearnPatternRequest,
) -> ApiResult<(serde_json::Value, &'static str)> {
    let text = req.metadata_json.as_str();
    match (&req.metadata, text.is_empty()) {
        (m, true) => Ok((
            m.as_ref()
                .map_or(serde_json::Value::Null, convert::struct_to_json),
            "metadata",
        )),
        (Some(m), false) if m.fields.is_empty() => Err(ApiError::invalid(
            "metadata",
            "is present but empty while metadata_json is set: send one form (a JavaScript \
             object given as metadata is encoded as an empty Struct; send its JSON.stringify \
             as metadata_json alone)",
        )),
        (Some(_), false) => Err(ApiError::invalid(
            "metadata_json",
            "is set together with metadata: send one form",
        )),
        (None, false) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) if v.is_object() => Ok((v, "metadata_json")),
            Ok(_) => Err(ApiError::invalid("metadata_json", "must be a JSON object")),
            Err(e) => Err(ApiError::invalid(
                "metadata_json",
                format!("is not valid JSON: {e}"),
            )),
        },
    }
}

#[tonic::async_trait]
impl Patterns for PatternsApi {
    #[instrument(level = "debug", skip_all)]
    async fn match_pattern(
        &self,
        req: Request<pb::MatchPatternRequest>,
    ) -> Result<Response<wire::MatchPatternResponse>, Status> {
        let req = req.into_inner();
        check_query("query", &req.query)?;
        check_min_confidence(req.min_confidence)?;
        let (mut answers, generation) = self.match_queries(
            std::slice::from_ref(&req.query),
            req.min_confidence,
            req.min_generation,
            false,
            req.metadata_as_json,
        )?;
        let (pattern, normalized_query) = answers.pop().unwrap_or_default();
        Ok(Response::new(wire::MatchPatternResponse {
            matched: pattern.is_some(),
            pattern,
            normalized_query,
            generation,
        }))
    }

    #[instrument(level = "debug", skip_all, fields(queries = req.get_ref().queries.len()))]
    async fn batch_match_patterns(
        &self,
        req: Request<pb::BatchMatchPatternsRequest>,
    ) -> Result<Response<wire::BatchMatchPatternsResponse>, Status> {
        let req = req.into_inner();
        if req.queries.len() > MAX_BATCH_QUERIES {
            return Err(ApiError::invalid(
                "queries",
                format!(
                    "has {} queries; the limit is {MAX_BATCH_QUERIES}",
                    req.queries.len()
                ),
            )
            .into());
        }
        for (i, q) in req.queries.iter().enumerate() {
            check_query(&format!("queries[{i}]"), q)?;
        }
        check_min_confidence(req.min_confidence)?;
        let (answers, generation) = self.match_queries(
            &req.queries,
            req.min_confidence,
            req.min_generation,
            true,
            req.metadata_as_json,
        )?;
        let results = answers
            .into_iter()
            .map(|(pattern, normalized_query)| wire::MatchResult {
                matched: pattern.is_some(),
                pattern,
                normalized_query,
            })
            .collect();
        Ok(Response::new(wire::BatchMatchPatternsResponse {
            results,
            generation,
        }))
    }

    #[instrument(skip_all)]
    async fn learn_pattern(
        &self,
        req: Request<pb::LearnPatternRequest>,
    ) -> Result<Response<pb::LearnPatternResponse>, Status> {
        let caller = audit::caller_of(&req);
        let req = req.into_inner();
        let (metadata, metadata_field) = proposed_metadata(&req)?;
        let proposal = Proposal {
            query: req.query,
            category: req.category,
            confidence: req.confidence,
            metadata,
            created_by: req.created_by,
        };
        let fields: Vec<_> = LEARN_FIELDS
            .iter()
            .map(|&(column, field)| match field {
                "metadata" => (column, metadata_field),
                _ => (column, field),
            })
            .collect();
        let learned = self
            .state
            .writes
            .learn(proposal, caller)
            .await
            .map_err(|e| match e {
                // The rules name `metadata`; the request may have sent it as `metadata_json`.
                WriteError::Rejected(mut v) if v.field == "metadata" => {
                    v.field = metadata_field;
                    ApiError::from(v)
                }
                e => write_error(e, &fields),
            })?;
        Ok(Response::new(pb::LearnPatternResponse {
            pattern: Some(pattern_pb(&learned.outcome.row, req.metadata_as_json)),
            created: learned.outcome.created,
            updated: learned.outcome.updated,
            served: learned.served,
            generation: learned.write.generation,
            publish_error: learned.write.publish_error.unwrap_or_default(),
        }))
    }

    async fn get_pattern(
        &self,
        req: Request<pb::GetPatternRequest>,
    ) -> Result<Response<pb::GetPatternResponse>, Status> {
        let req = req.into_inner();
        let id = req.id;
        check_id(id)?;
        let row = self
            .state
            .store()
            .get(id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found(id))?;
        let served = self.state.engine.current().snapshot.is_winner(id);
        Ok(Response::new(pb::GetPatternResponse {
            pattern: Some(pattern_pb(&row, req.metadata_as_json)),
            served,
        }))
    }

    async fn list_patterns(
        &self,
        req: Request<pb::ListPatternsRequest>,
    ) -> Result<Response<pb::ListPatternsResponse>, Status> {
        let req = req.into_inner();
        let page_size = match req.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(
                    "page_size",
                    format!("must be between 0 and {MAX_PAGE_SIZE}"),
                )
                .into());
            }
        };
        let after_id = if req.page_token.is_empty() {
            0
        } else {
            req.page_token
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| {
                    ApiError::invalid("page_token", "is not a token from a previous response")
                })?
        };
        let status = match pb::PatternStatus::try_from(req.status) {
            Ok(pb::PatternStatus::Unspecified) => None,
            Ok(pb::PatternStatus::Pending) => Some(PatternStatus::Pending),
            Ok(pb::PatternStatus::Approved) => Some(PatternStatus::Approved),
            Ok(pb::PatternStatus::Disabled) => Some(PatternStatus::Disabled),
            Err(_) => return Err(ApiError::invalid("status", "unknown status value").into()),
        };
        if req.category.chars().count() > MAX_CATEGORY_CHARS {
            return Err(ApiError::invalid(
                "category",
                format!("must be at most {MAX_CATEGORY_CHARS} characters"),
            )
            .into());
        }
        let category = Some(req.category.trim().to_owned()).filter(|c| !c.is_empty());
        let mut rows = self
            .state
            .store()
            .list(&ListQuery {
                after_id,
                limit: i64::from(page_size) + 1,
                status,
                category,
            })
            .await
            .map_err(ApiError::from)?;
        let next_page_token = if rows.len() > page_size as usize {
            rows.truncate(page_size as usize);
            rows.last().map(|r| r.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListPatternsResponse {
            patterns: rows
                .iter()
                .map(|r| pattern_pb(r, req.metadata_as_json))
                .collect(),
            next_page_token,
        }))
    }

    #[instrument(skip_all, fields(id = req.get_ref().id))]
    async fn approve_pattern(
        &self,
        req: Request<pb::ApprovePatternRequest>,
    ) -> Result<Response<pb::ApprovePatternResponse>, Status> {
        let caller = audit::caller_of(&req);
        let req = req.into_inner();
        let (pattern, write) = self
            .set_status(req.id, true, &req.reason, caller, req.metadata_as_json)
            .await?;
        Ok(Response::new(pb::ApprovePatternResponse {
            pattern: Some(pattern),
            generation: write.generation,
            publish_error: write.publish_error.unwrap_or_default(),
        }))
    }

    #[instrument(skip_all, fields(id = req.get_ref().id))]
    async fn disable_pattern(
        &self,
        req: Request<pb::DisablePatternRequest>,
    ) -> Result<Response<pb::DisablePatternResponse>, Status> {
        let caller = audit::caller_of(&req);
        let req = req.into_inner();
        let (pattern, write) = self
            .set_status(req.id, false, &req.reason, caller, req.metadata_as_json)
            .await?;
        Ok(Response::new(pb::DisablePatternResponse {
            pattern: Some(pattern),
            generation: write.generation,
            publish_error: write.publish_error.unwrap_or_default(),
        }))
    }

    #[instrument(skip_all, fields(id = req.get_ref().id))]
    async fn delete_pattern(
        &self,
        req: Request<pb::DeletePatternRequest>,
    ) -> Result<Response<pb::DeletePatternResponse>, Status> {
        let caller = audit::caller_of(&req);
        let req = req.into_inner();
        check_id(req.id)?;
        check_reason(&req.reason)?;
        let write = self
            .state
            .writes
            .delete(req.id, &req.reason, caller)
            .await
            .map_err(|e| write_error(e, &[]))?;
        Ok(Response::new(pb::DeletePatternResponse {
            id: req.id,
            generation: write.generation,
            publish_error: write.publish_error.unwrap_or_default(),
        }))
    }
}
