//! One input row of a bulk import job, as sent: JSON of `UserImportInput`, or for a CSV
//! job the JSON array of the row's cells.

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
    /// Where a CSV row starts in its file (the header is line 1).
    pub line: Option<i32>,
    /// The user a row of a sync job names (null for other jobs).
    pub source: Option<String>,
    pub external_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
