//! Rows found unchanged before a chunk is decided: from their users' import digests
//! ([`digest`]), read narrowly, and their approver sets checked at once when they stay as
//! stored. The same read tells which rows name no user yet, whose keys deciding then does
//! not look up again.
//!
//! A set found unchanged here is settled in the first pass: the row needs no second pass.
//! The second pass would check it after every user of the job is written, so the barrier
//! between the passes ([`super::barrier`]) sends it there after all when the job wrote one
//! of its approvers.

use std::collections::{HashMap, HashSet};

use sea_orm::{ConnectionTrait, DbErr};

use super::prefetch::Prepared;
use crate::approvers::{ApproverChange, Snapshot};
use crate::auth::TenantId;
use crate::jobs::{RowResult, digest};
use crate::users::import::{RowAction, UserImportOptions, plan_links};
use crate::users::lookup::UserKey;
use crate::users::profile::UserChanges;
use crate::users::store as user_store;

/// What a chunk's digest read found.
pub(super) struct Digested {
    /// The rows found unchanged, by index.
    pub(super) unchanged: HashMap<i32, RowResult>,
    /// The keys of rows that name no user yet, each named by one row of the chunk: no row
    /// before it in the chunk can create or rename a user to it, so deciding need not
    /// look for it again.
    pub(super) absent: HashSet<UserKey>,
}

/// The rows of a chunk found unchanged by digest, and the keys found to name no user.
pub(super) async fn by_digest(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    prepared: &[Prepared],
    options: &UserImportOptions,
) -> Result<Digested, DbErr> {
    let stamps = Stamps::read(conn, tenant, prepared).await?;
    let mut found = HashMap::new();
    let mut to_settle = Vec::new();
    for row in prepared {
        let Ok((changes, links)) = &row.parsed else {
            continue;
        };
        if let Some(result) = stamps.unchanged(row, changes, links, options) {
            if result.links_pending {
                to_settle.push((row.index, links));
            }
            found.insert(row.index, result);
        }
    }
    settle_sets(conn, tenant, &mut found, &to_settle, options).await?;
    Ok(Digested {
        unchanged: found,
        absent: stamps.absent,
    })
}

/// The import digests of a chunk's users, read narrowly before anything else.
struct Stamps {
    stored: HashMap<(String, String), user_store::Stamped>,
    /// Keys that more than one row of the chunk names: an earlier row may change the user
    /// before a later one is decided, so none of them is decided by digest.
    repeated: HashSet<(String, String)>,
    /// Keys read that name no user, and that one row of the chunk names.
    absent: HashSet<UserKey>,
}

impl Stamps {
    async fn read(
        conn: &impl ConnectionTrait,
        tenant: &TenantId,
        prepared: &[Prepared],
    ) -> Result<Self, DbErr> {
        let mut seen = HashSet::new();
        let mut repeated = HashSet::new();
        let mut keys = Vec::new();
        for row in prepared {
            if let Ok((changes, _)) = &row.parsed {
                let key = (changes.source.as_str(), changes.external_id.as_str());
                if !seen.insert(key) {
                    repeated.insert((key.0.to_owned(), key.1.to_owned()));
                }
                if row.digest.is_some() {
                    keys.push(key);
                }
            }
        }
        let stored = if keys.is_empty() {
            HashMap::new()
        } else {
            user_store::digests_of(conn, tenant, &keys).await?
        };
        let absent = keys
            .iter()
            .map(|&(source, external_id)| (source.to_owned(), external_id.to_owned()))
            .filter(|key| !stored.contains_key(key) && !repeated.contains(key))
            .map(|(source, external_id)| UserKey::External {
                source,
                external_id,
            })
            .collect();
        Ok(Self {
            stored,
            repeated,
            absent,
        })
    }

    /// The result of a row whose user is stored as this very row left it, and that nothing
    /// wrote since: `UNCHANGED`, its approvers still to be checked.
    fn unchanged(
        &self,
        row: &Prepared,
        changes: &UserChanges,
        links: &ApproverChange,
        options: &UserImportOptions,
    ) -> Option<RowResult> {
        let sent = row.digest.as_ref()?;
        let key = (changes.source.clone(), changes.external_id.clone());
        let stored = self.stored.get(&key)?;
        if self.repeated.contains(&key)
            || Some(digest::stamp(sent, stored.updated_at)) != stored.digest
        {
            return None;
        }
        Some(RowResult {
            index: row.index,
            lookup_key: row.lookup_key.clone(),
            action: RowAction::Unchanged,
            success: true,
            user_id: Some(stored.id),
            errors: Vec::new(),
            links_pending: links.touches_links(options.replace),
            blocked: false,
            unblocked: false,
        })
    }
}

/// Settles the rows (`(index, approver change)`) whose approver sets stay as stored, read
/// as they are now; the others are left to the second pass.
async fn settle_sets(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    found: &mut HashMap<i32, RowResult>,
    rows: &[(i32, &ApproverChange)],
    options: &UserImportOptions,
) -> Result<(), DbErr> {
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = rows
        .iter()
        .filter_map(|(index, _)| found.get(index)?.user_id)
        .collect();
    let specs = rows.iter().flat_map(|(_, change)| change.specs());
    let snapshot = Snapshot::load_stored(conn, tenant, &ids, specs).await?;
    for (index, change) in rows {
        let Some(result) = found.get_mut(index) else {
            continue;
        };
        let stays = matches!(
            plan_links(&snapshot, result.user_id, change, options.replace),
            Ok(None)
        );
        if stays {
            result.links_pending = false;
        }
    }
    Ok(())
}
