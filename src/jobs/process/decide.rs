//! How a chunk is written: its rows decided against the users as stored and written in
//! bulk (row by row in savepoints when the bulk write fails), and the approver pass's sets
//! checked and written.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, TransactionTrait};

use super::Stop;
use super::prefetch::Prepared;
use super::unchanged;
use crate::approvers::{self, ApproverChange, Snapshot};
use crate::auth::TenantId;
use crate::error::{AppError, FieldError};
use crate::jobs::chunks::InputRow;
use crate::jobs::digest;
use crate::jobs::images::{self, Image, Taken};
use crate::jobs::input::Inputs;
use crate::jobs::{RowResult, Summary, row_errors};
use crate::tracks;
use crate::users::import::{self, Decision, RowAction, UserImportOptions, plan_links};
use crate::users::profile::UserChanges;
use crate::users::store as user_store;

/// A chunk's rows decided and written.
pub(super) struct Written {
    /// The rows' results, in order.
    pub results: Vec<RowResult>,
    /// How many rows were found unchanged by their digests.
    pub by_digest: u64,
    /// Whether a row's outcome may depend on chunks before this one
    /// ([`crate::jobs::order`]): a row that was read well failed, or a user gave up a
    /// unique value (its key, email or login) to another.
    pub depends_on_order: bool,
}

/// Decides and writes a chunk's rows with a fixed number of statements per run of rows
/// that do not touch each other (see [`import::decide_prefix`]); usually one run. Rows
/// whose users' digests show them unchanged are decided first ([`unchanged`]).
async fn decide_and_write(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    prepared: &[Prepared],
    options: &UserImportOptions,
    now: chrono::DateTime<Utc>,
) -> Result<Written, DbErr> {
    let mut moves_values = false;
    let mut results = Vec::with_capacity(prepared.len());
    let mut taken = Vec::new();
    let mut pending: Vec<(&Prepared, &UserChanges, &ApproverChange)> = Vec::new();
    let unchanged::Digested {
        mut unchanged,
        absent,
    } = unchanged::by_digest(conn, tenant, prepared, options).await?;
    let by_digest = unchanged.len() as u64;
    for row in prepared {
        match &row.parsed {
            Ok((changes, links)) => match unchanged.remove(&row.index) {
                Some(result) => results.push(result),
                None => pending.push((row, changes, links)),
            },
            Err(error) => results.push(RowResult::failed(
                row.index,
                row.lookup_key.clone(),
                row_errors(error),
            )),
        }
    }
    let mut rest = pending.as_slice();
    while !rest.is_empty() {
        let changes: Vec<&UserChanges> = rest.iter().map(|(_, c, _)| *c).collect();
        let decisions =
            import::decide_prefix(conn, tenant, &changes, options, now.date_naive(), &absent)
                .await?;
        let (run, later) = rest.split_at(decisions.len());
        rest = later;
        let mut creates: Vec<&crate::users::profile::Profile> = Vec::new();
        let mut updates = Vec::new();
        let (mut create_digests, mut update_digests) = (Vec::new(), Vec::new());
        for ((row, _, _), decision) in run.iter().zip(&decisions) {
            let stamp = row.digest.as_ref().map(|digest| digest::stamp(digest, now));
            match decision {
                Ok(Decision::Create(profile)) => {
                    creates.push(profile);
                    create_digests.push(stamp);
                }
                Ok(Decision::Update {
                    user,
                    before,
                    after,
                }) => {
                    moves_values |= gives_up_values(before, after);
                    updates.push((user, before.as_ref(), after.as_ref()));
                    update_digests.push(stamp);
                }
                Ok(Decision::Unchanged(_) | Decision::Skip(_)) | Err(_) => {}
            }
        }
        let updated: Vec<i64> = updates.iter().map(|(user, _, _)| user.id).collect();
        let mut sets = approvers::store::sets_of(conn, tenant, &updated).await?;
        let (created, retagged) =
            user_store::insert_many(conn, tenant, &creates, &create_digests, now).await?;
        let mut created = created.into_iter();
        let retagged = retagged
            .and(user_store::update_many(conn, tenant, &updates, &update_digests, now).await?);
        tracks::follow(conn, tenant, retagged, now).await?;
        // Users found unchanged the long way (written before digests, or by another path
        // since) take this row's digest, so that the next import finds them by it.
        let stamps: Vec<(i64, i64)> = run
            .iter()
            .zip(&decisions)
            .filter_map(|((row, _, _), decision)| match (decision, &row.digest) {
                (Ok(Decision::Unchanged(user)), Some(digest)) => {
                    let stamp = digest::stamp(digest, user.updated_at);
                    (user.import_digest != Some(stamp)).then_some((user.id, stamp))
                }
                _ => None,
            })
            .collect();
        user_store::stamp_many(conn, tenant, &stamps).await?;
        for ((row, _, links), decision) in run.iter().zip(decisions) {
            let user_id = match &decision {
                Ok(Decision::Create(_)) => created.next(),
                Ok(Decision::Update { user, .. } | Decision::Unchanged(user)) => Some(user.id),
                Ok(Decision::Skip(_)) | Err(_) => None,
            };
            if let Ok(decision) = &decision {
                taken.extend(image_of(row.index, decision, user_id, &mut sets, now));
            }
            results.push(row_result(row, links, decision, user_id, options)?);
        }
    }
    if !options.dry_run {
        images::record(conn, tenant, job_id, taken).await?;
    }
    let failed_in_deciding = prepared
        .iter()
        .zip(&results)
        .any(|(row, result)| row.parsed.is_ok() && !result.success);
    Ok(Written {
        results,
        by_digest,
        depends_on_order: moves_values || failed_in_deciding,
    })
}

/// Whether a user written from `before` to `after` gives up one of its unique values, for
/// another user to take.
fn gives_up_values(
    before: &crate::users::profile::Profile,
    after: &crate::users::profile::Profile,
) -> bool {
    before.email_key() != after.email_key()
        || before.login_key() != after.login_key()
        || before.source != after.source
        || before.external_id != after.external_id
}

/// One chunk of rows decided and written in bulk ([`decide_and_write`]) in a savepoint of
/// `txn`: a chunk of a normal run in its own transaction, or of a whole-job run in the
/// job's. A database error rolls the savepoint back, and the chunk runs again with a
/// savepoint per row, so that the row alone fails (and the chunk counts as depending on
/// the order of chunks). The results are in the order of `prepared`.
pub(super) async fn decide_chunk_in_savepoint(
    txn: &DatabaseTransaction,
    tenant: &TenantId,
    job_id: i64,
    prepared: &[Prepared],
    options: &UserImportOptions,
    now: chrono::DateTime<Utc>,
) -> Result<Written, DbErr> {
    let savepoint = txn.begin().await?;
    let written = decide_and_write(&savepoint, tenant, job_id, prepared, options, now).await;
    let mut written = match written {
        Ok(written) => {
            savepoint.commit().await?;
            written
        }
        Err(error) => {
            savepoint.rollback().await?;
            tracing::warn!(job = job_id, %error, "chunk failed; running it again row by row");
            let mut batch = Vec::with_capacity(prepared.len());
            for row in prepared {
                batch.push(decide_in_savepoint(txn, tenant, job_id, row, options, now).await?);
            }
            Written {
                results: batch,
                by_digest: 0,
                depends_on_order: true,
            }
        }
    };
    written.results.sort_by_key(|row| row.index);
    Ok(written)
}

/// What a written decision keeps for a revert: the user before (none for a new one), with
/// its approver set from `sets`.
fn image_of(
    index: i32,
    decision: &Decision,
    user_id: Option<i64>,
    sets: &mut HashMap<i64, Vec<approvers::Link>>,
    now: chrono::DateTime<Utc>,
) -> Option<Taken> {
    match (decision, user_id) {
        (Decision::Create(profile), Some(user_id)) => Some(Taken {
            user_id,
            idx: index,
            lookup_key: format!("{}:{}", profile.source, profile.external_id),
            before: None,
            left_at: Some(now),
        }),
        (Decision::Update { user, before, .. }, _) => {
            let links = sets.remove(&user.id).unwrap_or_default();
            Some(Taken::written(
                index,
                Image::new(user.clone(), before, &links),
                now,
            ))
        }
        _ => None,
    }
}

/// Decides one row and writes the user (never its approvers: that is the second pass).
/// A refused row is a result; only a database failure is an error.
async fn decide_row(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    row: &Prepared,
    options: &UserImportOptions,
    now: chrono::DateTime<Utc>,
) -> Result<RowResult, DbErr> {
    let (changes, links) = match &row.parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            return Ok(RowResult::failed(
                row.index,
                row.lookup_key.clone(),
                row_errors(error),
            ));
        }
    };
    let decision = import::decide(conn, tenant, changes, options, now.date_naive()).await;
    let user_id = match &decision {
        Ok(decision) => {
            let mut sets = match decision {
                Decision::Update { user, .. } if !options.dry_run => {
                    approvers::store::sets_of(conn, tenant, &[user.id]).await?
                }
                _ => HashMap::new(),
            };
            let user_id = import::apply(conn, tenant, decision, now)
                .await?
                .map(|user| user.id);
            if !options.dry_run {
                let taken = image_of(row.index, decision, user_id, &mut sets, now);
                images::record(conn, tenant, job_id, taken.into_iter().collect()).await?;
            }
            user_id
        }
        Err(_) => None,
    };
    row_result(row, links, decision, user_id, options)
}

/// [`decide_row`] in a savepoint of `txn`: a row whose write fails (a unique value taken
/// meanwhile, say) is rolled back alone and fails with the reason.
async fn decide_in_savepoint(
    txn: &DatabaseTransaction,
    tenant: &TenantId,
    job_id: i64,
    row: &Prepared,
    options: &UserImportOptions,
    now: chrono::DateTime<Utc>,
) -> Result<RowResult, DbErr> {
    let savepoint = txn.begin().await?;
    match decide_row(&savepoint, tenant, job_id, row, options, now).await {
        Ok(result) => {
            savepoint.commit().await?;
            Ok(result)
        }
        Err(error) => {
            savepoint.rollback().await?;
            let error = match &row.parsed {
                Ok((changes, _)) => import::write_error(error, changes),
                Err(_) => error.into(),
            };
            // A database failure, busy or not, is the row's internal error.
            let error = match error {
                AppError::Busy(cause) => AppError::internal(anyhow::anyhow!("{cause}")),
                other => other,
            };
            if let AppError::Internal(cause) = &error {
                tracing::warn!(error = %format!("{cause:#}"), "a job row failed to write");
            }
            Ok(RowResult::failed(
                row.index,
                row.lookup_key.clone(),
                row_errors(&error),
            ))
        }
    }
}

/// What a decided row reports; `user_id` is the written (or matched) user. A database
/// failure during the decision is the chunk's error, not the row's.
fn row_result(
    row: &Prepared,
    links: &ApproverChange,
    decision: Result<Decision, AppError>,
    user_id: Option<i64>,
    options: &UserImportOptions,
) -> Result<RowResult, DbErr> {
    let failed =
        |error: &AppError| RowResult::failed(row.index, row.lookup_key.clone(), row_errors(error));
    let decision = match decision {
        Ok(decision) => decision,
        Err(AppError::Internal(error)) => return Err(DbErr::Custom(format!("{error:#}"))),
        Err(AppError::Busy(error)) => return Err(DbErr::Custom(format!("{error}"))),
        Err(error) => return Ok(failed(&error)),
    };
    let (action, blocked, unblocked) = import::counts(&decision, false);
    if let Decision::Skip(reason) = &decision {
        return Ok(RowResult {
            action,
            success: true,
            ..failed(reason)
        });
    }
    Ok(RowResult {
        index: row.index,
        lookup_key: row.lookup_key.clone(),
        action,
        success: true,
        user_id,
        errors: Vec::new(),
        links_pending: links.touches_links(options.replace),
        blocked,
        unblocked,
    })
}

/// Each row's approver change, by index; a row that cannot be read again fails its links.
pub(super) fn link_changes(
    inputs: &Inputs,
    rows: &[InputRow],
) -> HashMap<i32, Result<ApproverChange, AppError>> {
    rows.iter()
        .map(|row| (row.idx, inputs.links(row)))
        .collect()
}

/// The second pass over some rows: checks each one's approver set in turn against one
/// [`Snapshot`] of what the rows name, then writes every changed set with a few
/// multi-row statements. A row whose set is refused keeps its user and fails with the
/// reason.
pub(in crate::jobs) async fn set_links(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    before: &[RowResult],
    changes: &HashMap<i32, Result<ApproverChange, AppError>>,
    options: &UserImportOptions,
    now: chrono::DateTime<Utc>,
) -> Result<(Vec<RowResult>, Summary), Stop> {
    let mut ids: Vec<i64> = before.iter().filter_map(|row| row.user_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let users = user_store::existing(conn, tenant, &ids).await?;
    let ids: Vec<i64> = users.iter().copied().collect();
    let specs = changes.values().flatten().flat_map(ApproverChange::specs);
    let mut snapshot = Snapshot::load(conn, tenant, &ids, specs).await?;
    // Users whose row the first pass left as it was.
    let mut not_yet_written = std::collections::HashSet::new();
    let mut summary = Summary::default();
    let mut after = Vec::with_capacity(before.len());
    for row in before {
        let mut result = RowResult {
            links_pending: false,
            ..row.clone()
        };
        let user = row.user_id.filter(|id| users.contains(id));
        let outcome = match (user, changes.get(&row.index)) {
            (Some(user_id), Some(Ok(change))) => {
                match plan_links(&snapshot, Some(user_id), change, options.replace) {
                    Ok(None) => Ok(()),
                    Ok(Some(links)) => {
                        snapshot.accept(user_id, links);
                        if result.action == RowAction::Unchanged {
                            result.action = RowAction::Updated;
                            not_yet_written.insert(user_id);
                        }
                        Ok(())
                    }
                    Err(AppError::Internal(error)) => {
                        return Err(Stop::Failed(anyhow::anyhow!("{error:#}")));
                    }
                    Err(AppError::Busy(error)) => {
                        return Err(Stop::Failed(anyhow::anyhow!("{error}")));
                    }
                    Err(error) => Err(row_errors(&error)),
                }
            }
            (_, Some(Err(error))) => Err(row_errors(error)),
            _ => Err(vec![FieldError {
                field: None,
                code: "NOT_FOUND".to_owned(),
                message: "the user of this row no longer exists".to_owned(),
            }]),
        };
        if let Err(errors) = outcome {
            result.success = false;
            result.errors.extend(errors);
        }
        summary.recount(row, &result);
        after.push(result);
    }
    let written = snapshot.changes();
    // `updatedAt` moves with the approvers; a user this job wrote in its first pass has
    // it from then already.
    let touched: Vec<i64> = written
        .iter()
        .map(|change| change.user_id)
        .filter(|id| not_yet_written.contains(id))
        .collect();
    // Their images, before the links are written.
    let taken = if options.dry_run {
        Vec::new()
    } else {
        let rows: HashMap<i64, i32> = after
            .iter()
            .rev()
            .filter_map(|row| Some((row.user_id?, row.index)))
            .collect();
        let mut users: Vec<_> = user_store::by_ids(conn, tenant, &touched)
            .await?
            .into_values()
            .collect();
        users.sort_unstable_by_key(|user| user.id);
        images::current(conn, tenant, users)
            .await?
            .into_iter()
            .map(|image| Taken::written(rows[&image.user.id], image, now))
            .collect()
    };
    approvers::store::write_sets(conn, tenant, &written, now).await?;
    user_store::touch_many(conn, tenant, &touched, now).await?;
    images::record(conn, tenant, job_id, taken).await?;
    Ok((after, summary))
}
