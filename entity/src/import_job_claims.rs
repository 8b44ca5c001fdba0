//! Which worker runs a chunk of a job's first pass, and until when: the chunk, not the
//! job, is what workers claim, so that one job runs on every worker of every process. A
//! claim that ran out (its worker died) is taken by the next worker that asks.
//!
//! A chunk whose outcome could depend on an earlier chunk still unwritten (a row that
//! fails on a unique value, or moves one) is marked `in_order`: it runs only once every
//! chunk before it is written.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "import_job_claims")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub job_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub first_idx: i32,
    /// The worker running the chunk; none when it is free.
    pub owner: Option<String>,
    /// Until when (milliseconds since the epoch) the claim holds.
    pub lease_until: i64,
    pub in_order: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
