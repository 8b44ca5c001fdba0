//! A tag of a learning track, lower-cased; users with the tag are assigned the track.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "learning_track_tags")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub track_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub tag: String,
    pub tenant: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
