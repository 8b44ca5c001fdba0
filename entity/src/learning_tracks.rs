//! A learning track of a tenant: assigned by tags, with its compliance periods.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "learning_tracks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant: String,
    pub name: String,
    /// Days a completion stays valid; `None`: forever.
    pub validity_days: Option<i32>,
    /// Days before expiry from which a completion is `EXPIRING_SOON`.
    pub expiring_soon_days: i32,
    /// Days after assignment by which an uncompleted track is overdue; `None`: never.
    pub due_days: Option<i32>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
