//! An index on `(tenant, external_id)`: a bulk import looks up a chunk of users by their
//! external ids whatever their sources, in one `IN (…)` range per chunk, where one range per
//! source (or an `OR` of pairs, which SQLite answers by comparing every row with every pair)
//! would grow with the number of sources.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "ix_users_tenant_external_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Users::Table)
                    .col(Users::Tenant)
                    .col(Users::ExternalId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Users::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Tenant,
    ExternalId,
}
