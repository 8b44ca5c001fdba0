//! What CSV uploads, sync mode and retries keep with a job.
//!
//! - `import_jobs.csv_columns`: the header of a CSV job's file (JSON: its column names, its
//!   separator, whether it began with a byte order mark), so that rows stored as their
//!   cells can be read, and failed rows written back, in the columns they came in.
//! - `import_jobs.warnings`: what the job noticed once rather than per row (JSON array).
//! - `import_jobs.deactivate_missing`, `change_threshold`: sync mode.
//! - `import_jobs.retry_of`: the job whose failed rows this one runs again.
//! - `import_job_rows.line`: where a CSV row starts in its file (1-based, the header is
//!   line 1).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite adds one at a time.
        let columns = [
            ColumnDef::new(ImportJobs::CsvColumns)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(ImportJobs::Warnings)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(ImportJobs::DeactivateMissing)
                .boolean()
                .not_null()
                .default(false)
                .to_owned(),
            ColumnDef::new(ImportJobs::ChangeThreshold)
                .integer()
                .null()
                .to_owned(),
            ColumnDef::new(ImportJobs::RetryOf)
                .big_integer()
                .null()
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
            .alter_table(
                Table::alter()
                    .table(ImportJobRows::Table)
                    .add_column(ColumnDef::new(ImportJobRows::Line).integer().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ImportJobRows::Table)
                    .drop_column(ImportJobRows::Line)
                    .to_owned(),
            )
            .await?;
        for column in [
            ImportJobs::CsvColumns,
            ImportJobs::Warnings,
            ImportJobs::DeactivateMissing,
            ImportJobs::ChangeThreshold,
            ImportJobs::RetryOf,
        ] {
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

#[derive(DeriveIden, Clone, Copy)]
enum ImportJobs {
    Table,
    CsvColumns,
    Warnings,
    DeactivateMissing,
    ChangeThreshold,
    RetryOf,
}

#[derive(DeriveIden)]
enum ImportJobRows {
    Table,
    Line,
}
