//! One job, many workers: the chunk, not the job, is what a worker claims.
//!
//! `import_job_chunks.keys` holds, for a chunk stored from now on, the hashes of the keys
//! its rows name (external ids, emails, logins), so that a chunk whose rows meet an
//! earlier chunk's still unwritten waits for it. A chunk stored before has none, and runs
//! only after every chunk before it is written, as jobs always ran.
//!
//! `import_job_claims` holds which worker runs a chunk of the first pass, until when, and
//! the chunks that must run in order.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Chunks::Table)
                    .add_column(ColumnDef::new(Chunks::Keys).blob().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Claims::Table)
                    .col(ColumnDef::new(Claims::JobId).big_integer().not_null())
                    .col(ColumnDef::new(Claims::FirstIdx).integer().not_null())
                    .col(ColumnDef::new(Claims::Owner).string_len(128).null())
                    .col(ColumnDef::new(Claims::LeaseUntil).big_integer().not_null())
                    .col(
                        ColumnDef::new(Claims::InOrder)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .primary_key(Index::create().col(Claims::JobId).col(Claims::FirstIdx))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_import_job_claims_job")
                            .from(Claims::Table, Claims::JobId)
                            .to(Jobs::Table, Jobs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Claims::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Chunks::Table)
                    .drop_column(Chunks::Keys)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum Chunks {
    #[sea_orm(iden = "import_job_chunks")]
    Table,
    Keys,
}

#[derive(DeriveIden)]
enum Claims {
    #[sea_orm(iden = "import_job_claims")]
    Table,
    JobId,
    FirstIdx,
    Owner,
    LeaseUntil,
    InOrder,
}

#[derive(DeriveIden)]
enum Jobs {
    #[sea_orm(iden = "import_jobs")]
    Table,
    Id,
}
