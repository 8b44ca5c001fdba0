//! The chunks of a job's first pass, claimed by workers one at a time: the chunk, not the
//! job, is the unit of work, so one job runs on every worker of every process sharing the
//! database ([`entity::import_job_claims`]).
//!
//! A worker takes the first free chunk whose keys meet no earlier chunk still unwritten
//! ([`super::order`]); its claim holds until a time, renewed while the worker runs
//! ([`keep`]), and a claim that ran out (its worker died) is free again. A chunk is written at
//! most once whatever the claims say: its results are stored only where none are
//! ([`super::chunks::write_first_pass`]), in the transaction that writes its users.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use entity::import_job_chunks as chunks;
use entity::import_job_claims as claims;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::order::ChunkKeys;
use crate::db;

/// How many unwritten chunks a worker looks at for one it may take: those before it are
/// claimed by others, or wait for them.
const LOOK_AHEAD: u64 = 64;

/// What a worker may do next in a job's first pass.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// It holds the chunk that starts at this index.
    Claimed(i32),
    /// Every unwritten chunk is claimed by another worker, or waits for an earlier one.
    Wait,
    /// Every chunk is written.
    Done,
}

/// One worker's claims in one job, with the keys of the job's chunks as it read them
/// (they never change).
pub struct Claimer {
    job_id: i64,
    owner: String,
    keys: HashMap<i32, Option<Arc<ChunkKeys>>>,
    /// The chunks it claimed and has not written or let go.
    held: HashSet<i32>,
}

impl Claimer {
    pub fn new(job_id: i64, owner: &str) -> Self {
        Self {
            job_id,
            owner: owner.to_owned(),
            keys: HashMap::new(),
            held: HashSet::new(),
        }
    }

    /// Claims the next chunk this worker may write until `until_ms`, if any.
    pub async fn next(
        &mut self,
        db: &DatabaseConnection,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Next, DbErr> {
        let unwritten: Vec<i32> = chunks::Entity::find()
            .select_only()
            .column(chunks::Column::FirstIdx)
            .filter(chunks::Column::JobId.eq(self.job_id))
            .filter(chunks::Column::Results.is_null())
            .filter(chunks::Column::Input.is_not_null())
            .order_by_asc(chunks::Column::FirstIdx)
            .limit(LOOK_AHEAD)
            .into_tuple()
            .all(db)
            .await?;
        if unwritten.is_empty() {
            return Ok(Next::Done);
        }
        self.read_keys(db, &unwritten).await?;
        let claimed: HashMap<i32, claims::Model> = claims::Entity::find()
            .filter(claims::Column::JobId.eq(self.job_id))
            .filter(claims::Column::FirstIdx.is_in(unwritten.iter().copied()))
            .all(db)
            .await?
            .into_iter()
            .map(|claim| (claim.first_idx, claim))
            .collect();
        for (at, first_idx) in unwritten.iter().enumerate() {
            let claim = claimed.get(first_idx);
            // A claim of this worker's that it no longer holds (left by a run of it that
            // failed, and renewed since by this run) is free to it.
            let free = claim.is_none_or(|c| {
                c.owner.is_none()
                    || c.lease_until < now_ms
                    || (c.owner.as_deref() == Some(self.owner.as_str())
                        && !self.held.contains(first_idx))
            });
            let in_order = claim.is_some_and(|c| c.in_order);
            let earlier = &unwritten[..at];
            if !free || (in_order && at > 0) || self.waits(*first_idx, earlier) {
                continue;
            }
            if self.take(db, *first_idx, now_ms, until_ms).await? {
                self.held.insert(*first_idx);
                return Ok(Next::Claimed(*first_idx));
            }
        }
        Ok(Next::Wait)
    }

    /// Whether the chunk at `first_idx` must wait for one of the `earlier` chunks: they
    /// share a key, or one of them has no keys to compare.
    fn waits(&self, first_idx: i32, earlier: &[i32]) -> bool {
        let Some(Some(keys)) = self.keys.get(&first_idx) else {
            return !earlier.is_empty();
        };
        earlier.iter().any(|idx| match self.keys.get(idx) {
            Some(Some(other)) => keys.meets(other),
            _ => true,
        })
    }

    async fn read_keys(&mut self, db: &DatabaseConnection, chunks: &[i32]) -> Result<(), DbErr> {
        let missing: Vec<i32> = chunks
            .iter()
            .copied()
            .filter(|idx| !self.keys.contains_key(idx))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let read: Vec<(i32, Option<Vec<u8>>)> = chunks::Entity::find()
            .select_only()
            .column(chunks::Column::FirstIdx)
            .column(chunks::Column::Keys)
            .filter(chunks::Column::JobId.eq(self.job_id))
            .filter(chunks::Column::FirstIdx.is_in(missing))
            .into_tuple()
            .all(db)
            .await?;
        for (idx, keys) in read {
            let keys = keys.map(|bytes| Arc::new(ChunkKeys::decode(&bytes)));
            self.keys.insert(idx, keys);
        }
        Ok(())
    }

    /// Claims a chunk that is free: unclaimed, released, claimed until before now, or
    /// claimed by this worker.
    async fn take(
        &self,
        db: &DatabaseConnection,
        first_idx: i32,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, DbErr> {
        let txn = db::begin_write(db).await?;
        let backend = txn.get_database_backend();
        let taken = txn
            .execute_raw(db::statement(
                backend,
                "INSERT INTO import_job_claims (job_id, first_idx, owner, lease_until, in_order) \
                 VALUES (?, ?, ?, ?, FALSE) \
                 ON CONFLICT (job_id, first_idx) DO UPDATE \
                 SET owner = excluded.owner, lease_until = excluded.lease_until \
                 WHERE import_job_claims.owner IS NULL OR import_job_claims.lease_until < ? \
                 OR import_job_claims.owner = ?",
                vec![
                    self.job_id.into(),
                    first_idx.into(),
                    self.owner.clone().into(),
                    until_ms.into(),
                    now_ms.into(),
                    self.owner.clone().into(),
                ],
            ))
            .await?
            .rows_affected()
            == 1;
        txn.commit().await?;
        Ok(taken)
    }

    /// Notes that a chunk this worker claimed is written: its claim is over.
    pub fn written(&mut self, first_idx: i32) {
        self.held.remove(&first_idx);
    }

    /// Lets go of every chunk this worker holds.
    pub async fn release_all(&mut self, db: &DatabaseConnection) -> Result<(), DbErr> {
        let held: Vec<i32> = self.held.iter().copied().collect();
        for first_idx in held {
            self.release(db, first_idx, false).await?;
        }
        Ok(())
    }

    /// Lets go of a chunk this worker claimed and did not write; with `in_order`, the
    /// chunk runs only once every chunk before it is written.
    pub async fn release(
        &mut self,
        db: &DatabaseConnection,
        first_idx: i32,
        in_order: bool,
    ) -> Result<(), DbErr> {
        let txn = db::begin_write(db).await?;
        let mut update = claims::Entity::update_many()
            .col_expr(claims::Column::Owner, Option::<String>::None.into())
            .filter(claims::Column::JobId.eq(self.job_id))
            .filter(claims::Column::FirstIdx.eq(first_idx))
            .filter(claims::Column::Owner.eq(self.owner.as_str()));
        if in_order {
            update = update.col_expr(claims::Column::InOrder, true.into());
        }
        update.exec(&txn).await?;
        txn.commit().await?;
        self.held.remove(&first_idx);
        Ok(())
    }
}

/// Renews the claims `owner` holds in a job every third of `lease`, until aborted.
pub async fn keep(db: DatabaseConnection, job_id: i64, owner: String, lease: Duration) {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
    loop {
        tokio::time::sleep(lease / 3).await;
        let until = chrono::Utc::now().timestamp_millis() + lease_ms;
        if let Err(error) = renew(&db, job_id, &owner, until).await {
            tracing::warn!(job = job_id, %error, "cannot renew the claims of the job's chunks");
        }
    }
}

async fn renew(
    db: &DatabaseConnection,
    job_id: i64,
    owner: &str,
    until_ms: i64,
) -> Result<(), DbErr> {
    let txn = db::begin_write(db).await?;
    claims::Entity::update_many()
        .col_expr(claims::Column::LeaseUntil, until_ms.into())
        .filter(claims::Column::JobId.eq(job_id))
        .filter(claims::Column::Owner.eq(owner))
        .exec(&txn)
        .await?;
    txn.commit().await
}

/// Whether a chunk of the job before the one at `first_idx` is still unwritten: a chunk
/// that finds one runs out of order, and must not depend on it ([`super::order`]).
pub async fn runs_out_of_order(
    conn: &impl ConnectionTrait,
    job_id: i64,
    first_idx: i32,
) -> Result<bool, DbErr> {
    let earlier = chunks::Entity::find()
        .select_only()
        .column(chunks::Column::FirstIdx)
        .filter(chunks::Column::JobId.eq(job_id))
        .filter(chunks::Column::FirstIdx.lt(first_idx))
        .filter(chunks::Column::Results.is_null())
        .filter(chunks::Column::Input.is_not_null())
        .into_tuple::<i32>()
        .one(conn)
        .await?;
    Ok(earlier.is_some())
}
