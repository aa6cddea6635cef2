//! SQLite pattern rows as SQL, shared by the pool store (`super::sqlite`) and the direct reader
//! of full loads (`super::sqlite_direct`): the SELECT list, the full load's statement, the
//! revision query, and the check every decoder applies to stored metadata.

use super::StoreError;

/// The SELECT list every read uses (NULLs filled as in the PostgreSQL store, for rows other
/// clients wrote), in [`Col`](super::row_columns::Col) order and aliased by name (checked by
/// `the_select_list_follows_the_column_table`): the decoders read it by position.
macro_rules! columns {
    () => {
        "id, pattern, normalized_pattern, COALESCE(category, '') AS category, \
         CAST(COALESCE(confidence, 0) AS REAL) AS confidence, \
         COALESCE(times_used, 0) AS times_used, COALESCE(times_correct, 0) AS times_correct, \
         CAST(COALESCE(accuracy, 0) AS REAL) AS accuracy, created_at, \
         COALESCE(created_by, '') AS created_by, metadata, revision, last_used_at, \
         COALESCE(enabled, 0) AS enabled, COALESCE(status, 'pending') AS status, updated_at"
    };
}

pub(super) use columns;

/// The full load's statement (served rows, `columns!()`), for the pool and the direct reader
/// (and the bench's floors).
pub const FULL_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM auto_learned_patterns WHERE enabled AND status = 'approved'"
);

/// The store revision.
pub(super) const REVISION: &str = "SELECT value FROM hotplane_revision WHERE id = 1";

/// Metadata text as stored, checked to be JSON (any text can be stored in SQLite).
pub(super) fn checked_metadata(id: i64, text: Option<&str>) -> Result<Option<&str>, StoreError> {
    crate::model::metadata_text(id, text).map_err(|reason| StoreError::BadRow { id, reason })
}
