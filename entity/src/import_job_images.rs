//! A user a job wrote, as it was before (its before-image), and as the job left it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "import_job_images")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub job_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i64,
    pub tenant: String,
    /// The index of the job's first row (or step) that wrote the user.
    pub idx: i32,
    /// `source:externalId` of the user when the job first wrote it.
    pub lookup_key: String,
    /// The user before the job (JSON: row, tags, attributes, approvers); null when the job
    /// created it.
    pub before: Option<String>,
    /// The user's `updated_at` as the job left it; null when the job removed the user.
    pub left_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
