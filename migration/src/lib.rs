pub use sea_orm_migration::prelude::*;

mod m20261101_000001_users;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261101_000001_users::Migration)]
    }
}

pub use sea_orm_migration::MigrationStatus;
