//! A named, typed value of a user (seed 004's attributes, seed 001's `user_fieldN`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_attributes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub tenant: String,
    /// The value in its canonical text form for its type.
    pub value: String,
    /// `STRING`, `NUMBER`, `BOOLEAN` or `DATE`.
    pub kind: String,
    pub class: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
