//! One approver of one user, with its label (seed 003).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "approver_links")]
pub struct Model {
    /// The user whose bookings are approved.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i64,
    /// The user who approves (or, for `NON_APPROVING_MANAGER`, only sees).
    #[sea_orm(primary_key, auto_increment = false)]
    pub approver_id: i64,
    /// `MANAGER`, `NON_APPROVING_MANAGER` or `HIGHER_MANAGER`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub label: String,
    pub tenant: String,
    pub can_approve: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
