//! Sync mode (`deactivateMissing`): which users a job's rows name, and whom it deactivated.
//!
//! - `import_job_rows.source`, `external_id`: the user a row of a sync job names (left
//!   null for other jobs), indexed so that the users of a source absent from the job are
//!   found with one anti-join.
//! - `import_job_deactivations`: the users a sync job made inactive (in a dry run, would
//!   have), to list them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEX: &str = "ix_import_job_rows_job_user";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [ImportJobRows::Source, ImportJobRows::ExternalId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ImportJobRows::Table)
                        .add_column(ColumnDef::new(column).text().null())
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(ImportJobRows::Table)
                    .col(ImportJobRows::JobId)
                    .col(ImportJobRows::Source)
                    .col(ImportJobRows::ExternalId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ImportJobDeactivations::Table)
                    .col(
                        ColumnDef::new(ImportJobDeactivations::JobId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ImportJobDeactivations::UserId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ImportJobDeactivations::Tenant)
                            .string_len(64)
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ImportJobDeactivations::JobId)
                            .col(ImportJobDeactivations::UserId),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(ImportJobDeactivations::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(INDEX)
                    .table(ImportJobRows::Table)
                    .to_owned(),
            )
            .await?;
        for column in [ImportJobRows::Source, ImportJobRows::ExternalId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ImportJobRows::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum ImportJobRows {
    Table,
    JobId,
    Source,
    ExternalId,
}

#[derive(DeriveIden)]
enum ImportJobDeactivations {
    Table,
    JobId,
    UserId,
    Tenant,
}
