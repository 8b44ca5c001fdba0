//! Planner statistics, refreshed as a job grows the tables it writes.

use entity::import_jobs as jobs;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, EntityName};

use crate::db;
use crate::jobs::Phase;

/// When a run refreshes the planner statistics of the tables a pass grows
/// ([`db::analyze`]): each time the rows the pass has gone through double, until they are
/// [`Statistics::LAST`] chunks. By then the tables the pass writes are big enough for
/// lookups by key to go through their indexes, and they only grow from there: PostgreSQL
/// scales its row estimates with a table's size, and SQLite's choice between two indexes
/// rests on how selective each is, not on how many rows there are. Later refreshes would
/// cost the most (the tables are biggest) and change no plan. Each pass starts over, for
/// the tables it grows: the approver pass fills `approver_links`, empty until then. A
/// job's own chunks are read by key alone and need none.
pub(in crate::jobs) struct Statistics {
    chunk: i64,
    phase: Phase,
    next: i64,
}

impl Statistics {
    const LAST: i64 = 16;

    pub(in crate::jobs) fn new(chunk: usize) -> Self {
        let chunk = chunk as i64;
        Self {
            chunk,
            phase: Phase::Done,
            next: chunk,
        }
    }

    pub(in crate::jobs) async fn refresh(
        &mut self,
        db: &DatabaseConnection,
        job: &jobs::Model,
    ) -> Result<(), DbErr> {
        let done = match Phase::from_stored(&job.phase) {
            Phase::Users => job.processed,
            _ => job.links_processed,
        };
        self.refresh_for(db, Phase::from_stored(&job.phase), done as usize)
            .await
    }

    /// As [`Statistics::refresh`], for a pass at `phase` that has gone through `done` rows.
    /// A whole-job run refreshes them inside its transaction, whose rows they then count
    /// (from outside, PostgreSQL would count none of them and keep planning for empty
    /// tables). PostgreSQL keeps `ANALYZE`'s lock on each table to the transaction's end,
    /// so a refresh of the same tables by another job waits for this one to finish; writes
    /// do not.
    pub(super) async fn refresh_for(
        &mut self,
        conn: &impl ConnectionTrait,
        phase: Phase,
        done: usize,
    ) -> Result<(), DbErr> {
        if phase != self.phase {
            self.phase = phase;
            self.next = self.chunk;
        }
        let tables = match phase {
            Phase::Users => &[
                entity::users::Entity.table_name(),
                entity::user_tags::Entity.table_name(),
                entity::user_attributes::Entity.table_name(),
                entity::track_assignments::Entity.table_name(),
                entity::import_job_images::Entity.table_name(),
            ][..],
            Phase::Links => &[
                entity::approver_links::Entity.table_name(),
                entity::import_job_images::Entity.table_name(),
            ][..],
            Phase::Removals | Phase::Done => return Ok(()),
        };
        let done = done as i64;
        if done < self.next || self.next > self.chunk * Self::LAST {
            return Ok(());
        }
        while self.next <= done {
            self.next *= 2;
        }
        db::analyze(conn, tables).await
    }
}
