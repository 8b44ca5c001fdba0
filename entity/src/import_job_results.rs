//! What a bulk import job did with one of its rows.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "import_job_results")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub job_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub idx: i32,
    pub tenant: String,
    /// `source:externalId` as the row names its user.
    pub lookup_key: String,
    /// `CREATED`, `UPDATED`, `UNCHANGED`, `SKIPPED` or `FAILED`.
    pub action: String,
    pub success: bool,
    pub user_id: Option<i64>,
    /// JSON array of `{field, code, message}`.
    pub errors: Option<String>,
    /// The row's approvers are still to be set (the job's second pass).
    pub links_pending: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
