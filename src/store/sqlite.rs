//! Stub: to be implemented.
#![allow(unused_variables, clippy::unused_async)]
use super::*;

#[derive(Debug, Clone)]
pub struct SqliteStore;

impl SqliteStore {
    pub async fn connect(opts: &StoreOptions) -> Result<Self, StoreError> { todo!() }
    pub async fn migrate(&self) -> Result<(), StoreError> { todo!() }
    pub async fn load_full(&self) -> Result<FullLoad, StoreError> { todo!() }
    pub async fn load_delta(&self, since: &Cursor) -> Result<DeltaLoad, StoreError> { todo!() }
    pub async fn load_ids(&self, ids: &[i64]) -> Result<Vec<PatternRow>, StoreError> { todo!() }
    pub async fn revision(&self) -> Result<i64, StoreError> { todo!() }
    pub async fn get(&self, id: i64) -> Result<Option<PatternRow>, StoreError> { todo!() }
    pub async fn list(&self, q: &ListQuery) -> Result<Vec<PatternRow>, StoreError> { todo!() }
    pub async fn learn(&self, p: &NewPattern) -> Result<LearnOutcome, StoreError> { todo!() }
    pub async fn set_status(&self, id: i64, status: PatternStatus, enabled: bool) -> Result<Option<PatternRow>, StoreError> { todo!() }
    pub async fn delete(&self, id: i64) -> Result<bool, StoreError> { todo!() }
    pub async fn flush_hits(&self, hits: &[HitDelta]) -> Result<(), StoreError> { todo!() }
    pub async fn close(&self) { todo!() }
}
