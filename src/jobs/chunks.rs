//! How a job keeps its rows and their results: per chunk, not per row
//! ([`entity::import_job_chunks`]). A chunk's input rows are one compressed record, and
//! its results another once its first pass has written them; a later pass rewrites the
//! results record. So a chunk costs its job a statement or two of bookkeeping, however
//! many rows it holds, and an unchanged row costs none of its own.
//!
//! Each record counts its failed and its pending results, so that failed rows (a page of
//! them, the failed-rows file, a retry) and the second pass's work are found by reading
//! only the chunks that hold them.

use std::collections::HashSet;

use entity::import_job_chunks::{
    self as chunks, StoredError, StoredInput, StoredResult, decode, encode,
};
use entity::import_job_keys as keys;
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::value::RawValue;

use super::RowResult;
use super::order::ChunkKeys;
use crate::auth::TenantId;
use crate::db;
use crate::error::FieldError;
use crate::users::import::RowAction;

/// An input row of a job as it was sent.
#[derive(Debug, Clone)]
pub struct InputRow {
    pub idx: i32,
    /// Where a CSV row starts in its file (the header is line 1).
    pub line: Option<i32>,
    /// `UserImportInput` JSON, or the JSON array of a CSV row's cells.
    pub input: String,
}

/// An input row of a new job.
pub struct NewRow {
    pub idx: i32,
    pub input: String,
    pub line: Option<i32>,
    /// `(source, externalId)` the row names, kept for sync jobs only.
    pub user: Option<(String, String)>,
    /// The hashes of the keys the row names ([`super::order`]).
    pub keys: Vec<u64>,
}

/// One chunk of a job, decoded.
#[derive(Debug)]
pub struct Chunk {
    pub first_idx: i32,
    pub last_idx: i32,
    /// Its input rows, in order (none for a revert's chunk).
    pub inputs: Vec<InputRow>,
    /// Its rows' results, in order; empty until its first pass has written them.
    pub results: Vec<RowResult>,
}

impl Chunk {
    fn of(model: chunks::Model, with_input: bool) -> Result<Self, DbErr> {
        let inputs = match (&model.input, with_input) {
            (Some(bytes), true) => decode::<StoredInput>(bytes)?
                .into_iter()
                .enumerate()
                .map(|(n, row)| InputRow {
                    idx: model.first_idx + n as i32,
                    line: row.line,
                    input: row.input.get().to_owned(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let results = match &model.results {
            Some(bytes) => decode::<StoredResult>(bytes)?
                .into_iter()
                .map(RowResult::from)
                .collect(),
            None => Vec::new(),
        };
        Ok(Self {
            first_idx: model.first_idx,
            last_idx: model.last_idx,
            inputs,
            results,
        })
    }

    /// Its results whose approvers are still to be set.
    pub fn pending(&self) -> Vec<RowResult> {
        self.results
            .iter()
            .filter(|row| row.links_pending)
            .cloned()
            .collect()
    }

    /// Its input rows at these indexes, in order.
    pub fn inputs_at(&self, indexes: &[i32]) -> Vec<InputRow> {
        indexes
            .iter()
            .filter_map(|&idx| {
                let at = usize::try_from(idx - self.first_idx).ok()?;
                self.inputs.get(at).cloned()
            })
            .collect()
    }
}

/// Stores the input rows of a new job, `size` rows a chunk record, and for a sync job the
/// users they name. The rows must follow one another: `idx` from the first on.
pub async fn insert_inputs(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    rows: Vec<NewRow>,
    size: usize,
) -> Result<(), DbErr> {
    let mut named = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let part: Vec<NewRow> = rows.by_ref().take(size.max(1)).collect();
        let first = part[0].idx;
        let stored: Vec<StoredInput> = part
            .iter()
            .map(|row| StoredInput {
                line: row.line,
                input: raw(&row.input),
            })
            .collect();
        let keys = ChunkKeys::of(part.iter().flat_map(|row| row.keys.iter().copied()));
        named.extend(part.into_iter().filter_map(|row| row.user));
        let count = stored.len() as i32;
        chunks::Entity::insert(chunks::ActiveModel {
            job_id: Set(job_id),
            first_idx: Set(first),
            last_idx: Set(first + count - 1),
            row_count: Set(count),
            tenant: Set(tenant.as_str().to_owned()),
            input: Set(Some(encode(&stored)?)),
            results: Set(None),
            failed: Set(0),
            pending: Set(0),
            keys: Set(Some(keys.encode())),
        })
        .exec_without_returning(conn)
        .await?;
    }
    insert_keys(conn, tenant, job_id, named).await
}

/// A row as the JSON it is; one that is not JSON (a request never stores one) as a string,
/// which reads back as an unreadable row.
fn raw(input: &str) -> Box<RawValue> {
    RawValue::from_string(input.to_owned()).unwrap_or_else(|_| {
        RawValue::from_string(serde_json::Value::String(input.to_owned()).to_string())
            .expect("a JSON string is JSON")
    })
}

/// Records the users a sync job's rows name; a user named twice is kept once.
async fn insert_keys(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    named: Vec<(String, String)>,
) -> Result<(), DbErr> {
    let rows = named
        .into_iter()
        .map(|(source, external_id)| keys::ActiveModel {
            job_id: Set(job_id),
            source: Set(source),
            external_id: Set(external_id),
            tenant: Set(tenant.as_str().to_owned()),
        })
        .collect();
    db::Insert::new()
        .on_conflict_ignore(&[
            keys::Column::JobId,
            keys::Column::Source,
            keys::Column::ExternalId,
        ])
        .exec(conn, rows)
        .await?;
    Ok(())
}

/// The first chunk from index `from` on, written or not, with its input.
pub async fn next_from(
    conn: &impl ConnectionTrait,
    job_id: i64,
    from: i32,
) -> Result<Option<Chunk>, DbErr> {
    next_where(conn, job_id, from, Condition::all(), true).await
}

/// The first chunk from index `from` on with failed results, with its input.
pub async fn next_failed(
    conn: &impl ConnectionTrait,
    job_id: i64,
    from: i32,
) -> Result<Option<Chunk>, DbErr> {
    next_where(conn, job_id, from, chunks::Column::Failed.gt(0), true).await
}

/// The first chunk from index `from` on with results whose approvers are still to be
/// set, with its input.
pub async fn next_pending(
    conn: &impl ConnectionTrait,
    job_id: i64,
    from: i32,
) -> Result<Option<Chunk>, DbErr> {
    next_where(conn, job_id, from, chunks::Column::Pending.gt(0), true).await
}

/// The results of a job's rows that are `UNCHANGED` with their approvers settled, for
/// these users, read chunk by chunk without the input rows.
pub async fn settled_unchanged(
    conn: &impl ConnectionTrait,
    job_id: i64,
    users: &HashSet<i64>,
) -> Result<Vec<RowResult>, DbErr> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(chunk) = next_where(conn, job_id, from, Condition::all(), false).await? {
        from = chunk.last_idx + 1;
        found.extend(chunk.results.into_iter().filter(|row| {
            row.success
                && !row.links_pending
                && row.action == RowAction::Unchanged
                && row.user_id.is_some_and(|id| users.contains(&id))
        }));
    }
    Ok(found)
}

async fn next_where(
    conn: &impl ConnectionTrait,
    job_id: i64,
    from: i32,
    condition: impl sea_orm::sea_query::IntoCondition,
    with_input: bool,
) -> Result<Option<Chunk>, DbErr> {
    chunks::Entity::find()
        .filter(chunks::Column::JobId.eq(job_id))
        .filter(chunks::Column::LastIdx.gte(from))
        .filter(condition)
        .order_by_asc(chunks::Column::FirstIdx)
        .one(conn)
        .await?
        .map(|model| Chunk::of(model, with_input))
        .transpose()
}

/// Stores the first pass's results of the chunk that starts at `first_idx`, and its input
/// rows again when `inputs` are given (rows whose password did its work, without it).
/// Answers false, storing nothing, when the chunk has results already: another worker
/// wrote it (see [`super::claims`]).
pub async fn write_first_pass(
    conn: &impl ConnectionTrait,
    job_id: i64,
    first_idx: i32,
    results: &[RowResult],
    inputs: Option<&[InputRow]>,
) -> Result<bool, DbErr> {
    let mut update = chunks::Entity::update_many()
        .col_expr(
            chunks::Column::Results,
            Expr::value(encode_results(results)?),
        )
        .col_expr(chunks::Column::Failed, Expr::value(failed(results)))
        .col_expr(chunks::Column::Pending, Expr::value(pending(results)));
    if let Some(inputs) = inputs {
        let stored: Vec<StoredInput> = inputs
            .iter()
            .map(|row| StoredInput {
                line: row.line,
                input: raw(&row.input),
            })
            .collect();
        update = update.col_expr(chunks::Column::Input, Expr::value(encode(&stored)?));
    }
    let done = update
        .filter(chunks::Column::JobId.eq(job_id))
        .filter(chunks::Column::FirstIdx.eq(first_idx))
        .filter(chunks::Column::Results.is_null())
        .exec(conn)
        .await?;
    Ok(done.rows_affected == 1)
}

/// The chunk that starts at `first_idx`, with its input, if no pass has written it yet.
pub async fn unwritten_at(
    conn: &impl ConnectionTrait,
    job_id: i64,
    first_idx: i32,
) -> Result<Option<Chunk>, DbErr> {
    chunks::Entity::find()
        .filter(chunks::Column::JobId.eq(job_id))
        .filter(chunks::Column::FirstIdx.eq(first_idx))
        .filter(chunks::Column::Results.is_null())
        .one(conn)
        .await?
        .map(|model| Chunk::of(model, true))
        .transpose()
}

/// Stores a new chunk of results without input (a revert's, whose rows are its job's
/// before-images), in index order.
pub async fn insert_results(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    results: &[RowResult],
) -> Result<(), DbErr> {
    let (Some(first), Some(last)) = (results.first(), results.last()) else {
        return Ok(());
    };
    chunks::Entity::insert(chunks::ActiveModel {
        job_id: Set(job_id),
        first_idx: Set(first.index),
        last_idx: Set(last.index),
        row_count: Set(results.len() as i32),
        tenant: Set(tenant.as_str().to_owned()),
        input: Set(None),
        results: Set(Some(encode_results(results)?)),
        failed: Set(failed(results)),
        pending: Set(pending(results)),
        keys: Set(None),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Replaces stored results with these (matched by index), rewriting each chunk that holds
/// one of them once.
pub async fn update_results(
    conn: &impl ConnectionTrait,
    job_id: i64,
    changed: &[RowResult],
) -> Result<(), DbErr> {
    let mut changed: Vec<&RowResult> = changed.iter().collect();
    changed.sort_by_key(|row| row.index);
    let mut rest = changed.as_slice();
    while let Some(first) = rest.first() {
        let model = chunks::Entity::find()
            .filter(chunks::Column::JobId.eq(job_id))
            .filter(chunks::Column::LastIdx.gte(first.index))
            .filter(chunks::Column::FirstIdx.lte(first.index))
            .one(conn)
            .await?
            .ok_or_else(|| {
                DbErr::RecordNotFound(format!("job {job_id} has no row {}", first.index))
            })?;
        let mut chunk = Chunk::of(model, false)?;
        let within = rest
            .iter()
            .take_while(|row| row.index <= chunk.last_idx)
            .count();
        let (these, later) = rest.split_at(within);
        rest = later;
        for row in these {
            match chunk.results.binary_search_by_key(&row.index, |r| r.index) {
                Ok(at) => chunk.results[at] = (*row).clone(),
                Err(_) => {
                    return Err(DbErr::RecordNotFound(format!(
                        "job {job_id} has no result for row {}",
                        row.index
                    )));
                }
            }
        }
        chunks::Entity::update_many()
            .col_expr(
                chunks::Column::Results,
                Expr::value(encode_results(&chunk.results)?),
            )
            .col_expr(chunks::Column::Failed, Expr::value(failed(&chunk.results)))
            .col_expr(
                chunks::Column::Pending,
                Expr::value(pending(&chunk.results)),
            )
            .filter(chunks::Column::JobId.eq(job_id))
            .filter(chunks::Column::FirstIdx.eq(chunk.first_idx))
            .exec(conn)
            .await?;
    }
    Ok(())
}

fn encode_results(results: &[RowResult]) -> Result<Vec<u8>, DbErr> {
    let stored: Vec<StoredResult> = results.iter().map(StoredResult::from).collect();
    encode(&stored)
}

fn failed(results: &[RowResult]) -> i32 {
    results.iter().filter(|row| !row.success).count() as i32
}

fn pending(results: &[RowResult]) -> i32 {
    results.iter().filter(|row| row.links_pending).count() as i32
}

/// Up to `limit` results of a job after index `after` (all of them, or only the failed),
/// in index order: only the chunks that hold such results are read.
pub async fn results_page(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    only_failed: bool,
    after: Option<i32>,
    limit: u64,
) -> Result<Vec<RowResult>, DbErr> {
    let after = after.unwrap_or(-1);
    let mut page = Vec::new();
    let mut from = after.saturating_add(1);
    while (page.len() as u64) < limit {
        let mut query = chunks::Entity::find()
            .filter(written(tenant, job_id))
            .filter(chunks::Column::LastIdx.gte(from))
            .order_by_asc(chunks::Column::FirstIdx);
        if only_failed {
            query = query.filter(chunks::Column::Failed.gt(0));
        }
        let Some(model) = query.one(conn).await? else {
            break;
        };
        let chunk = Chunk::of(model, false)?;
        from = chunk.last_idx.saturating_add(1);
        page.extend(
            chunk
                .results
                .into_iter()
                .filter(|row| row.index > after && !(only_failed && row.success))
                .take(limit as usize - page.len()),
        );
        if chunk.last_idx == i32::MAX {
            break;
        }
    }
    Ok(page)
}

/// How many results a job has stored (or only failed ones).
pub async fn count_results(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    only_failed: bool,
) -> Result<u64, DbErr> {
    let column = if only_failed {
        chunks::Column::Failed
    } else {
        chunks::Column::RowCount
    };
    let total: Option<i64> = chunks::Entity::find()
        .select_only()
        .expr(Func::sum(Expr::col(column)).cast_as("BIGINT"))
        .filter(written(tenant, job_id))
        .into_tuple()
        .one(conn)
        .await?
        .flatten();
    Ok(u64::try_from(total.unwrap_or(0)).unwrap_or(0))
}

/// The chunks of a tenant's job that hold results.
fn written(tenant: &TenantId, job_id: i64) -> Condition {
    Condition::all()
        .add(chunks::Column::Tenant.eq(tenant.as_str()))
        .add(chunks::Column::JobId.eq(job_id))
        .add(chunks::Column::Results.is_not_null())
}

/// Every result of a job whose approvers (or removal) are still to come.
pub async fn all_pending(
    conn: &impl ConnectionTrait,
    job_id: i64,
) -> Result<Vec<RowResult>, DbErr> {
    let models = chunks::Entity::find()
        .filter(chunks::Column::JobId.eq(job_id))
        .filter(chunks::Column::Pending.gt(0))
        .order_by_asc(chunks::Column::FirstIdx)
        .all(conn)
        .await?;
    let mut pending = Vec::new();
    for model in models {
        pending.extend(Chunk::of(model, false)?.pending());
    }
    Ok(pending)
}

/// The results of a job at these indexes, in index order.
pub async fn results_at(
    conn: &impl ConnectionTrait,
    job_id: i64,
    indexes: &[i32],
) -> Result<Vec<RowResult>, DbErr> {
    let indexes = sorted(indexes);
    let mut found = Vec::with_capacity(indexes.len());
    for chunk in covering(conn, job_id, &indexes, false).await? {
        found.extend(
            chunk
                .results
                .into_iter()
                .filter(|row| indexes.binary_search(&row.index).is_ok()),
        );
    }
    Ok(found)
}

/// The input rows of a job at these indexes, in index order.
pub async fn inputs_at(
    conn: &impl ConnectionTrait,
    job_id: i64,
    indexes: &[i32],
) -> Result<Vec<InputRow>, DbErr> {
    let indexes = sorted(indexes);
    let mut found = Vec::with_capacity(indexes.len());
    for chunk in covering(conn, job_id, &indexes, true).await? {
        let within: Vec<i32> = indexes
            .iter()
            .copied()
            .filter(|idx| (chunk.first_idx..=chunk.last_idx).contains(idx))
            .collect();
        found.extend(chunk.inputs_at(&within));
    }
    Ok(found)
}

fn sorted(indexes: &[i32]) -> Vec<i32> {
    let mut sorted = indexes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

/// The chunks of a job that hold one of these indexes (sorted, distinct), in order.
async fn covering(
    conn: &impl ConnectionTrait,
    job_id: i64,
    sorted: &[i32],
    with_input: bool,
) -> Result<Vec<Chunk>, DbErr> {
    let mut chunks = Vec::new();
    let mut rest = sorted;
    while let Some(&first) = rest.first() {
        let Some(model) = chunks::Entity::find()
            .filter(chunks::Column::JobId.eq(job_id))
            .filter(chunks::Column::LastIdx.gte(first))
            .order_by_asc(chunks::Column::FirstIdx)
            .one(conn)
            .await?
        else {
            break;
        };
        let chunk = Chunk::of(model, with_input)?;
        let last = chunk.last_idx;
        rest = &rest[rest.partition_point(|&idx| idx <= last)..];
        chunks.push(chunk);
    }
    Ok(chunks)
}

impl From<StoredResult> for RowResult {
    fn from(stored: StoredResult) -> Self {
        Self {
            index: stored.idx,
            lookup_key: stored.lookup_key,
            action: RowAction::from_stored(&stored.action),
            success: stored.success,
            user_id: stored.user_id,
            errors: stored
                .errors
                .into_iter()
                .map(|error| FieldError {
                    field: error.field,
                    code: error.code,
                    message: error.message,
                })
                .collect(),
            links_pending: stored.links_pending,
            blocked: false,
            unblocked: false,
        }
    }
}

impl From<&RowResult> for StoredResult {
    fn from(row: &RowResult) -> Self {
        Self {
            idx: row.index,
            lookup_key: row.lookup_key.clone(),
            action: row.action.as_str().to_owned(),
            success: row.success,
            user_id: row.user_id,
            errors: row
                .errors
                .iter()
                .map(|error| StoredError {
                    field: error.field.clone(),
                    code: error.code.clone(),
                    message: error.message.clone(),
                })
                .collect(),
            links_pending: row.links_pending,
        }
    }
}
