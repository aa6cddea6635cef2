//! Reading the live table's column limits, and naming the column of a refusal the database did
//! not name.
//!
//! Each store keeps its limits in an `ArcSwap` shared by its clones: read after migrating, read
//! again when PostgreSQL refuses a value as too long (the table changed since: the refusal says
//! no column, so the fresh limits tell which written value broke one, and later requests are
//! refused before any SQL). See `columns` for what the limits mean on each database.

use std::sync::Arc;

use arc_swap::ArcSwap;
use sqlx::{PgPool, SqlitePool};
use tracing::{info, warn};

use super::{
    StoreError,
    columns::{ColumnLimits, TextColumn, declared_length},
    db_errors::Problem,
};

/// A store's live limits, shared by its clones.
pub(super) type SharedLimits = Arc<ArcSwap<ColumnLimits>>;

/// No live limits yet: hotplane's own apply until the store is migrated.
pub(super) fn unknown() -> SharedLimits {
    Arc::new(ArcSwap::from_pointee(ColumnLimits::default()))
}

/// The declared lengths of the pattern table's character columns in the connection's schema.
async fn read_pg(pool: &PgPool) -> Result<ColumnLimits, sqlx::Error> {
    let rows: Vec<(String, i32)> = sqlx::query_as(
        "SELECT column_name::text, character_maximum_length::int4 \
           FROM information_schema.columns \
          WHERE table_schema = current_schema() AND table_name = 'auto_learned_patterns' \
            AND character_maximum_length IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    Ok(ColumnLimits::from_declared(rows.into_iter().filter_map(
        |(name, len)| usize::try_from(len).ok().map(|len| (name, len)),
    )))
}

/// The lengths the pattern table's declared types give (`VARCHAR(20)`), unenforced by SQLite.
async fn read_sqlite(pool: &SqlitePool) -> Result<ColumnLimits, sqlx::Error> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, type FROM pragma_table_info('auto_learned_patterns')")
            .fetch_all(pool)
            .await?;
    Ok(ColumnLimits::from_declared(rows.into_iter().filter_map(
        |(name, declared)| declared_length(&declared).map(|len| (name, len)),
    )))
}

/// Reads the PostgreSQL limits into `shared` and logs the ones narrower than hotplane's. A
/// failure keeps the limits known so far (the database refuses what does not fit anyway).
pub(super) async fn refresh_pg(pool: &PgPool, shared: &SharedLimits) {
    remember(shared, read_pg(pool).await, "postgres");
}

/// Reads the SQLite limits into `shared` (see [`refresh_pg`]).
pub(super) async fn refresh_sqlite(pool: &SqlitePool, shared: &SharedLimits) {
    remember(shared, read_sqlite(pool).await, "sqlite");
}

fn remember(shared: &SharedLimits, read: Result<ColumnLimits, sqlx::Error>, backend: &str) {
    match read {
        Ok(limits) => {
            if *shared.load_full() != limits {
                info!(
                    backend,
                    declared = ?limits.declared(),
                    narrowed = ?limits.narrowed(),
                    "read the pattern table's column limits; values longer than the narrowed \
                     ones are refused with INVALID_ARGUMENT"
                );
            }
            shared.store(Arc::new(limits));
        }
        Err(e) => warn!(
            backend,
            error = %e,
            "reading the pattern table's column limits failed; hotplane's own limits apply"
        ),
    }
}

/// Fills in the column of a PostgreSQL refusal of `written`: for a value too long (SQLSTATE
/// 22001 names no column), the first written value over the live limits, read again; for a
/// CHECK constraint, its one column from the catalog. Other errors pass through unchanged.
pub(super) async fn explain_pg(
    pool: &PgPool,
    shared: &SharedLimits,
    mut e: StoreError,
    written: &[(TextColumn, &str)],
) -> StoreError {
    let StoreError::Refused { refusal, .. } = &mut e else {
        return e;
    };
    if refusal.column.is_some() {
        return e;
    }
    match &refusal.problem {
        Problem::TooLong { .. } => {
            refresh_pg(pool, shared).await;
            if let Some((column, limit)) = shared.load().first_over(written.iter().copied()) {
                refusal.column = Some(column.name().to_owned());
                refusal.problem = Problem::TooLong { limit: Some(limit) };
            }
        }
        Problem::Check {
            constraint: Some(name),
        } => {
            let columns: Vec<String> = sqlx::query_scalar(
                "SELECT a.attname::text FROM pg_constraint AS c \
                   JOIN pg_attribute AS a \
                     ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) \
                  WHERE c.conrelid = 'auto_learned_patterns'::regclass AND c.conname = $1",
            )
            .bind(name)
            .fetch_all(pool)
            .await
            .unwrap_or_default();
            if let [column] = columns.as_slice() {
                refusal.column = Some(column.clone());
            }
        }
        _ => {}
    }
    e
}
