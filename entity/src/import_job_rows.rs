//! One input row of a bulk import job, as sent (JSON of `UserImportInput`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "import_job_rows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub job_id: i64,
    /// 0-based position in the input.
    #[sea_orm(primary_key, auto_increment = false)]
    pub idx: i32,
    pub tenant: String,
    pub input: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
