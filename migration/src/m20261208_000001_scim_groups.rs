//! SCIM groups. A group's members are the users carrying its tag (`name`); the row makes the
//! group exist before it has members, keeps the name the identity provider gave it, and
//! gives it an id that survives a rename.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ScimGroups::Table)
                    .col(
                        ColumnDef::new(ScimGroups::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ScimGroups::Tenant).string_len(64).not_null())
                    .col(ColumnDef::new(ScimGroups::Tag).string_len(100).not_null())
                    .col(
                        ColumnDef::new(ScimGroups::DisplayName)
                            .string_len(100)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ScimGroups::ExternalId)
                            .string_len(255)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ScimGroups::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ScimGroups::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_scim_groups_tenant_tag")
                    .table(ScimGroups::Table)
                    .col(ScimGroups::Tenant)
                    .col(ScimGroups::Tag)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ScimGroups::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum ScimGroups {
    Table,
    Id,
    Tenant,
    Tag,
    DisplayName,
    ExternalId,
    CreatedAt,
    UpdatedAt,
}
