//! Drops the index on `approver_links (tenant)` alone. Every read of links names their
//! users or approvers, which the primary key and `ix_approver_links_approver` find; with
//! the tenant index beside them, SQLite, before any statistics exist, may pick it instead
//! and read every link of the tenant for each lookup, so that walking a chain of managers
//! grew with the square of the tenant's size. Bulk imports also write one index fewer.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "ix_approver_links_tenant";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(ApproverLinks::Table)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(ApproverLinks::Table)
                    .col(ApproverLinks::Tenant)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum ApproverLinks {
    Table,
    Tenant,
}
