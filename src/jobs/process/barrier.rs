//! The barrier between a job's passes: every user is written before any approver set is,
//! so that approvers named in any order are found.
//!
//! A row found unchanged by digest had its approver set checked in the first pass, against
//! the approvers as they were then ([`super::unchanged`]). Checked in the second pass, it
//! would see them as the whole job left them. The two agree unless the job wrote one of
//! those approvers afterwards (its key, email or `active` may have moved), so such rows are
//! sent to the second pass after all, in the transaction that ends the first.

use std::collections::HashSet;

use entity::import_jobs as jobs;
use sea_orm::{ConnectionTrait, DbErr};

use crate::auth::TenantId;
use crate::jobs::{chunks, images};

/// Sends to the second pass the rows of `job` settled in its first pass whose approvers
/// the job updated; answers how many.
pub(super) async fn reopen(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job: &mut jobs::Model,
) -> Result<i32, DbErr> {
    // Only a row found unchanged is settled before the second pass.
    if job.unchanged == 0 {
        return Ok(0);
    }
    let users: HashSet<i64> = images::approved_by_updated(conn, tenant, job.id)
        .await?
        .into_iter()
        .collect();
    if users.is_empty() {
        return Ok(0);
    }
    let mut rows = chunks::settled_unchanged(conn, job.id, &users).await?;
    for row in &mut rows {
        row.links_pending = true;
    }
    chunks::update_results(conn, job.id, &rows).await?;
    let reopened = i32::try_from(rows.len()).unwrap_or(i32::MAX);
    job.links_processed -= reopened;
    Ok(reopened)
}
