//! Who approves for whom (seed 003's approvers): one row per (user, approver, label).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApproverLinks::Table)
                    .col(
                        ColumnDef::new(ApproverLinks::UserId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ApproverLinks::ApproverId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ApproverLinks::Label)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ApproverLinks::Tenant)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ApproverLinks::CanApprove)
                            .boolean()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ApproverLinks::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ApproverLinks::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ApproverLinks::UserId)
                            .col(ApproverLinks::ApproverId)
                            .col(ApproverLinks::Label),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_approver_links_user")
                            .from(ApproverLinks::Table, ApproverLinks::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_approver_links_approver")
                            .from(ApproverLinks::Table, ApproverLinks::ApproverId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_approver_links_approver")
                    .table(ApproverLinks::Table)
                    .col(ApproverLinks::ApproverId)
                    .col(ApproverLinks::Label)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_approver_links_tenant")
                    .table(ApproverLinks::Table)
                    .col(ApproverLinks::Tenant)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ApproverLinks::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ApproverLinks {
    Table,
    UserId,
    ApproverId,
    Label,
    Tenant,
    CanApprove,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}
