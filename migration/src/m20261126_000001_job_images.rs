//! What undoing a job needs.
//!
//! - `import_job_images`: for each user a job wrote, the user as it was before (its
//!   before-image: the user's row, tags, attributes and approver set, as JSON; null when
//!   the job created the user) and its `updated_at` as the job left it (null when the job
//!   removed the user), which tells whether the user changed again since. `idx` orders the
//!   users as the job first reached them.
//! - `import_jobs.revert_of`: the job a `REVERT` job undoes.
//! - `import_jobs.deleted`: users a job removed (a revert removes the users its job
//!   created).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const IMAGES_BY_IDX: &str = "ix_import_job_images_job_idx";
const JOBS_BY_REVERT: &str = "ix_import_jobs_revert_of";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            ColumnDef::new(ImportJobs::RevertOf)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(ImportJobs::Deleted)
                .integer()
                .not_null()
                .default(0)
                .to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(ImportJobs::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name(JOBS_BY_REVERT)
                    .table(ImportJobs::Table)
                    .col(ImportJobs::RevertOf)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ImportJobImages::Table)
                    .col(
                        ColumnDef::new(ImportJobImages::JobId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ImportJobImages::UserId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ImportJobImages::Tenant)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(ImportJobImages::Idx).integer().not_null())
                    .col(ColumnDef::new(ImportJobImages::LookupKey).text().not_null())
                    .col(ColumnDef::new(ImportJobImages::Before).text().null())
                    .col(
                        ColumnDef::new(ImportJobImages::LeftAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ImportJobImages::JobId)
                            .col(ImportJobImages::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ImportJobImages::Table, ImportJobImages::JobId)
                            .to(ImportJobs::Table, ImportJobs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(IMAGES_BY_IDX)
                    .table(ImportJobImages::Table)
                    .col(ImportJobImages::JobId)
                    .col(ImportJobImages::Idx)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ImportJobImages::Table).to_owned())
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(JOBS_BY_REVERT)
                    .table(ImportJobs::Table)
                    .to_owned(),
            )
            .await?;
        for column in [ImportJobs::RevertOf, ImportJobs::Deleted] {
            manager
                .alter_table(
                    Table::alter()
                        .table(ImportJobs::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ImportJobs {
    Table,
    Id,
    RevertOf,
    Deleted,
}

#[derive(DeriveIden)]
enum ImportJobImages {
    Table,
    JobId,
    UserId,
    Tenant,
    Idx,
    LookupKey,
    Before,
    LeftAt,
}
