//! A job stores itself per chunk, not per row (`import_job_chunks`): each chunk of its input
//! rows is one compressed record, and so are their results once written. The rows of a
//! sync job name their users in `import_job_keys`.
//!
//! Jobs stored before move over as they are: their rows and results become chunk records of
//! up to 2,000 rows, cut where a job's written rows end so that a job still running resumes
//! where it stood; then `import_job_rows` and `import_job_results` go. `down` moves them
//! back, all but which user each row of a sync job named (a sync job still running then
//! deactivates nobody).

use entity::import_job_chunks::{StoredError, StoredInput, StoredResult, decode, encode};
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, FromQueryResult, Statement, Value};
use serde_json::value::RawValue;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Rows per chunk record made of a job stored per row.
const CHUNK: i32 = 2_000;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_chunks(manager).await?;
        create_keys(manager).await?;
        let conn = manager.get_connection();
        for (job_id, tenant) in stored_jobs(conn).await? {
            move_job(conn, job_id, &tenant).await?;
        }
        conn.execute_unprepared(
            "INSERT INTO import_job_keys (job_id, source, external_id, tenant) \
             SELECT DISTINCT job_id, source, external_id, tenant FROM import_job_rows \
             WHERE source IS NOT NULL AND external_id IS NOT NULL",
        )
        .await?;
        manager
            .drop_table(Table::drop().table(Old::ImportJobResults).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Old::ImportJobRows).to_owned())
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_old_tables(manager).await?;
        let conn = manager.get_connection();
        let backend = conn.get_database_backend();
        let chunks = ChunkRecord::find_by_statement(Statement::from_string(
            backend,
            "SELECT job_id, first_idx, tenant, input, results FROM import_job_chunks \
             ORDER BY job_id, first_idx",
        ))
        .all(conn)
        .await?;
        for chunk in chunks {
            if let Some(input) = &chunk.input {
                for (n, row) in decode::<StoredInput>(input)?.into_iter().enumerate() {
                    let idx = chunk.first_idx + n as i32;
                    conn.execute_raw(Statement::from_sql_and_values(
                        backend,
                        placeholders(
                            backend,
                            "INSERT INTO import_job_rows (job_id, idx, tenant, input, line) \
                             VALUES (?, ?, ?, ?, ?)",
                        ),
                        [
                            chunk.job_id.into(),
                            idx.into(),
                            chunk.tenant.clone().into(),
                            row.input.get().to_owned().into(),
                            row.line.into(),
                        ],
                    ))
                    .await?;
                }
            }
            for result in chunk
                .results
                .as_deref()
                .map(decode::<StoredResult>)
                .transpose()?
                .unwrap_or_default()
            {
                let errors = (!result.errors.is_empty())
                    .then(|| serde_json::to_string(&result.errors))
                    .transpose()
                    .map_err(|e| DbErr::Json(e.to_string()))?;
                conn.execute_raw(Statement::from_sql_and_values(
                    backend,
                    placeholders(
                        backend,
                        "INSERT INTO import_job_results (job_id, idx, tenant, lookup_key, action, \
                         success, user_id, errors, links_pending) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    ),
                    [
                        chunk.job_id.into(),
                        result.idx.into(),
                        chunk.tenant.clone().into(),
                        result.lookup_key.into(),
                        result.action.into(),
                        result.success.into(),
                        result.user_id.into(),
                        errors.into(),
                        result.links_pending.into(),
                    ],
                ))
                .await?;
            }
        }
        manager
            .drop_table(Table::drop().table(New::ImportJobKeys).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(New::ImportJobChunks).to_owned())
            .await
    }
}

#[derive(FromQueryResult)]
struct ChunkRecord {
    job_id: i64,
    first_idx: i32,
    tenant: String,
    input: Option<Vec<u8>>,
    results: Option<Vec<u8>>,
}

#[derive(FromQueryResult)]
struct OldRow {
    idx: i32,
    input: String,
    line: Option<i32>,
}

#[derive(FromQueryResult)]
struct OldResult {
    idx: i32,
    lookup_key: String,
    action: String,
    success: bool,
    user_id: Option<i64>,
    errors: Option<String>,
    links_pending: bool,
}

/// SQLite's `?` placeholders as PostgreSQL's `$n`.
fn placeholders(backend: sea_orm_migration::sea_orm::DatabaseBackend, sql: &str) -> String {
    if backend != sea_orm_migration::sea_orm::DatabaseBackend::Postgres {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

/// Every job with rows or results stored per row: `(id, tenant)`.
async fn stored_jobs(conn: &impl ConnectionTrait) -> Result<Vec<(i64, String)>, DbErr> {
    #[derive(FromQueryResult)]
    struct Job {
        job_id: i64,
        tenant: String,
    }
    let jobs = Job::find_by_statement(Statement::from_string(
        conn.get_database_backend(),
        "SELECT job_id, tenant FROM import_job_rows \
         UNION SELECT job_id, tenant FROM import_job_results ORDER BY job_id",
    ))
    .all(conn)
    .await?;
    Ok(jobs
        .into_iter()
        .map(|job| (job.job_id, job.tenant))
        .collect())
}

/// Moves one job's rows and results into chunk records, [`CHUNK`] rows at a time.
async fn move_job(conn: &impl ConnectionTrait, job_id: i64, tenant: &str) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    let mut after = -1;
    loop {
        let rows = OldRow::find_by_statement(Statement::from_sql_and_values(
            backend,
            placeholders(
                backend,
                "SELECT idx, input, line FROM import_job_rows WHERE job_id = ? AND idx > ? \
                 ORDER BY idx LIMIT ?",
            ),
            [job_id.into(), after.into(), CHUNK.into()],
        ))
        .all(conn)
        .await?;
        // A job without input rows (a revert) has its results alone.
        let results_to = match (rows.is_empty(), rows.last()) {
            (false, Some(last)) => last.idx,
            _ => i32::MAX,
        };
        let results = OldResult::find_by_statement(Statement::from_sql_and_values(
            backend,
            placeholders(
                backend,
                "SELECT idx, lookup_key, action, success, user_id, errors, links_pending \
                 FROM import_job_results WHERE job_id = ? AND idx > ? AND idx <= ? \
                 ORDER BY idx LIMIT ?",
            ),
            [job_id.into(), after.into(), results_to.into(), CHUNK.into()],
        ))
        .all(conn)
        .await?;
        if rows.is_empty() && results.is_empty() {
            return Ok(());
        }
        let mut results: Vec<StoredResult> = results.into_iter().map(stored_result).collect();
        let last = if rows.is_empty() {
            let last = results.last().map_or(after, |r| r.idx);
            insert_chunk(conn, job_id, tenant, None, &results).await?;
            last
        } else {
            // A chunk is written whole or not at all: cut where the written rows end.
            let written = rows
                .iter()
                .take_while(|row| results.iter().any(|r| r.idx == row.idx))
                .count();
            let cut = if written == 0 { rows.len() } else { written };
            let rows = &rows[..cut];
            let last = rows.last().map_or(after, |row| row.idx);
            results.retain(|r| r.idx <= last);
            let inputs: Vec<StoredInput> = rows.iter().map(stored_input).collect();
            insert_chunk(conn, job_id, tenant, Some((rows[0].idx, &inputs)), &results).await?;
            last
        };
        after = last;
    }
}

fn stored_input(row: &OldRow) -> StoredInput {
    // A row that is not JSON (none should be) stays readable as a string, which the job
    // then reports as an unreadable row, as before.
    let input = RawValue::from_string(row.input.clone()).unwrap_or_else(|_| {
        RawValue::from_string(serde_json::Value::String(row.input.clone()).to_string())
            .expect("a JSON string is JSON")
    });
    StoredInput {
        line: row.line,
        input,
    }
}

fn stored_result(result: OldResult) -> StoredResult {
    StoredResult {
        idx: result.idx,
        lookup_key: result.lookup_key,
        action: result.action,
        success: result.success,
        user_id: result.user_id,
        errors: result
            .errors
            .as_deref()
            .and_then(|json| serde_json::from_str::<Vec<StoredError>>(json).ok())
            .unwrap_or_default(),
        links_pending: result.links_pending,
    }
}

/// Stores one chunk record: its input rows from their first index, if it has any, and
/// its results, if written.
async fn insert_chunk(
    conn: &impl ConnectionTrait,
    job_id: i64,
    tenant: &str,
    input: Option<(i32, &[StoredInput])>,
    results: &[StoredResult],
) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    let (first, rows, input) = match input {
        Some((first, rows)) => (first, rows.len(), Some(encode(rows)?)),
        None => (results[0].idx, results.len(), None),
    };
    let last = match input {
        Some(_) => first + rows as i32 - 1,
        None => results.last().map_or(first, |r| r.idx),
    };
    let failed = results.iter().filter(|r| !r.success).count() as i32;
    let pending = results.iter().filter(|r| r.links_pending).count() as i32;
    let results: Value = if results.is_empty() {
        Value::Bytes(None)
    } else {
        encode(results)?.into()
    };
    conn.execute_raw(Statement::from_sql_and_values(
        backend,
        placeholders(
            backend,
            "INSERT INTO import_job_chunks (job_id, first_idx, last_idx, row_count, tenant, input, \
             results, failed, pending) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ),
        [
            job_id.into(),
            first.into(),
            last.into(),
            (rows as i32).into(),
            tenant.into(),
            input.map_or(Value::Bytes(None), Into::into),
            results,
            failed.into(),
            pending.into(),
        ],
    ))
    .await?;
    Ok(())
}

async fn create_chunks(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(New::ImportJobChunks)
                .col(ColumnDef::new(New::JobId).big_integer().not_null())
                .col(ColumnDef::new(New::FirstIdx).integer().not_null())
                .col(ColumnDef::new(New::LastIdx).integer().not_null())
                .col(ColumnDef::new(New::RowCount).integer().not_null())
                .col(ColumnDef::new(New::Tenant).string_len(64).not_null())
                .col(ColumnDef::new(New::Input).blob().null())
                .col(ColumnDef::new(New::Results).blob().null())
                .col(ColumnDef::new(New::Failed).integer().not_null().default(0))
                .col(ColumnDef::new(New::Pending).integer().not_null().default(0))
                .primary_key(Index::create().col(New::JobId).col(New::FirstIdx))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_import_job_chunks_job")
                        .from(New::ImportJobChunks, New::JobId)
                        .to(Old::ImportJobs, Old::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
}

async fn create_keys(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(New::ImportJobKeys)
                .col(ColumnDef::new(New::JobId).big_integer().not_null())
                .col(ColumnDef::new(New::Source).text().not_null())
                .col(ColumnDef::new(New::ExternalId).text().not_null())
                .col(ColumnDef::new(New::Tenant).string_len(64).not_null())
                .primary_key(
                    Index::create()
                        .col(New::JobId)
                        .col(New::Source)
                        .col(New::ExternalId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_import_job_keys_job")
                        .from(New::ImportJobKeys, New::JobId)
                        .to(Old::ImportJobs, Old::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
}

/// The per-row tables as the migrations before this one left them.
async fn create_old_tables(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Old::ImportJobRows)
                .col(ColumnDef::new(Old::JobId).big_integer().not_null())
                .col(ColumnDef::new(Old::Idx).integer().not_null())
                .col(ColumnDef::new(Old::Tenant).string_len(64).not_null())
                .col(ColumnDef::new(Old::Input).text().not_null())
                .col(ColumnDef::new(Old::Line).integer().null())
                .col(ColumnDef::new(Old::Source).text().null())
                .col(ColumnDef::new(Old::ExternalId).text().null())
                .primary_key(Index::create().col(Old::JobId).col(Old::Idx))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_import_job_rows_job")
                        .from(Old::ImportJobRows, Old::JobId)
                        .to(Old::ImportJobs, Old::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    manager
        .create_index(
            Index::create()
                .name("ix_import_job_rows_job_user")
                .table(Old::ImportJobRows)
                .col(Old::JobId)
                .col(Old::Source)
                .col(Old::ExternalId)
                .to_owned(),
        )
        .await?;
    manager
        .create_table(
            Table::create()
                .table(Old::ImportJobResults)
                .col(ColumnDef::new(Old::JobId).big_integer().not_null())
                .col(ColumnDef::new(Old::Idx).integer().not_null())
                .col(ColumnDef::new(Old::Tenant).string_len(64).not_null())
                .col(ColumnDef::new(Old::LookupKey).text().not_null())
                .col(ColumnDef::new(Old::Action).string_len(16).not_null())
                .col(ColumnDef::new(Old::Success).boolean().not_null())
                .col(ColumnDef::new(Old::UserId).big_integer().null())
                .col(ColumnDef::new(Old::Errors).text().null())
                .col(ColumnDef::new(Old::LinksPending).boolean().not_null())
                .primary_key(Index::create().col(Old::JobId).col(Old::Idx))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_import_job_results_job")
                        .from(Old::ImportJobResults, Old::JobId)
                        .to(Old::ImportJobs, Old::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    for (name, column) in [
        ("ix_import_job_results_success", Old::Success),
        ("ix_import_job_results_links", Old::LinksPending),
    ] {
        manager
            .create_index(
                Index::create()
                    .name(name)
                    .table(Old::ImportJobResults)
                    .col(Old::JobId)
                    .col(column)
                    .col(Old::Idx)
                    .to_owned(),
            )
            .await?;
    }
    Ok(())
}

#[derive(DeriveIden)]
enum New {
    ImportJobChunks,
    ImportJobKeys,
    JobId,
    FirstIdx,
    LastIdx,
    RowCount,
    Tenant,
    Input,
    Results,
    Failed,
    Pending,
    Source,
    ExternalId,
}

#[derive(DeriveIden)]
enum Old {
    ImportJobs,
    Id,
    ImportJobRows,
    ImportJobResults,
    JobId,
    Idx,
    Tenant,
    Input,
    Line,
    Source,
    ExternalId,
    LookupKey,
    Action,
    Success,
    UserId,
    Errors,
    LinksPending,
}
