//! The barrier between a job's passes: every user is written before any approver set is,
//! so that approvers named in any order are found.
//!
//! A row found unchanged by digest had its approver set checked in the first pass, against
//! the set and the approvers as they were then ([`super::unchanged`]). Checked in the second
//! pass, in order, it would see them as the first pass left them, and the sets the rows
//! before it set. The two agree unless one of its approvers was written since the job began
//! (its key, email or `active` may have moved), or another row of the job still sets its
//! user's approvers. Such rows go to the second pass after all, in the transaction that
//! ends the first.

use std::collections::HashSet;

use entity::import_jobs as jobs;
use sea_orm::{ConnectionTrait, DbErr};

use crate::approvers;
use crate::auth::TenantId;
use crate::jobs::chunks;
use crate::jobs::input::Inputs;

/// Sends to the second pass the rows of `job` settled in its first pass that might be
/// judged otherwise there; answers how many.
pub(super) async fn reopen(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    inputs: &Inputs,
    replace: bool,
    job: &mut jobs::Model,
) -> Result<i32, DbErr> {
    // Only a row found unchanged is settled before the second pass.
    if job.unchanged == 0 {
        return Ok(0);
    }
    let began = job.started_at.unwrap_or(job.created_at);
    let mut users: HashSet<i64> = approvers::store::approved_by_written_since(conn, tenant, began)
        .await?
        .into_iter()
        .collect();
    users.extend(
        chunks::all_pending(conn, job.id)
            .await?
            .iter()
            .filter_map(|row| row.user_id),
    );
    if users.is_empty() {
        return Ok(0);
    }
    let settled = chunks::settled_unchanged(conn, job.id, &users).await?;
    let indexes: Vec<i32> = settled.iter().map(|row| row.index).collect();
    // A row that says nothing of approvers is settled by the second pass as it is.
    let touching: HashSet<i32> = chunks::inputs_at(conn, job.id, &indexes)
        .await?
        .iter()
        .filter(|row| replace || inputs.sends_links(row))
        .map(|row| row.idx)
        .collect();
    let mut rows: Vec<_> = settled
        .into_iter()
        .filter(|row| touching.contains(&row.index))
        .collect();
    for row in &mut rows {
        row.links_pending = true;
    }
    chunks::update_results(conn, job.id, &rows).await?;
    let reopened = i32::try_from(rows.len()).unwrap_or(i32::MAX);
    job.links_processed -= reopened;
    Ok(reopened)
}
