//! `import_jobs.failures`: the runs in a row of a job that ended in a server error. A job
//! gives up after a few of them, and waits longer after each; `attempts` still counts every
//! claim (a takeover and a resumption after a restart too), which is no failure.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ImportJobs::Table)
                    .add_column(
                        ColumnDef::new(ImportJobs::Failures)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ImportJobs::Table)
                    .drop_column(ImportJobs::Failures)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum ImportJobs {
    Table,
    Failures,
}
