//! Users, their tags and their attributes.
//!
//! Every row carries its tenant; each uniqueness rule holds within one tenant only, so two
//! tenants may hold the same external id, email or login. Timestamps are written by the
//! application, never by database defaults, so both backends store the same instants.
//! Lengths are checked by the application; the keys it derives by lower-casing (which can
//! lengthen text) are `text`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(
                        ColumnDef::new(Users::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Users::Tenant).string_len(64).not_null())
                    .col(ColumnDef::new(Users::Source).string_len(100).not_null())
                    .col(ColumnDef::new(Users::ExternalId).string_len(255).not_null())
                    .col(ColumnDef::new(Users::Email).string_len(254).not_null())
                    .col(ColumnDef::new(Users::EmailKey).text().not_null())
                    .col(ColumnDef::new(Users::Login).string_len(254).not_null())
                    .col(ColumnDef::new(Users::LoginKey).text().not_null())
                    .col(ColumnDef::new(Users::FirstName).string_len(100).not_null())
                    .col(ColumnDef::new(Users::MiddleName).string_len(100).null())
                    .col(ColumnDef::new(Users::LastName).string_len(100).not_null())
                    .col(ColumnDef::new(Users::Title).string_len(100).null())
                    .col(ColumnDef::new(Users::PasswordHash).string_len(255).null())
                    .col(ColumnDef::new(Users::BirthDate).date().null())
                    .col(ColumnDef::new(Users::Gender).string_len(16).null())
                    .col(ColumnDef::new(Users::Active).boolean().not_null())
                    .col(ColumnDef::new(Users::Phone).string_len(32).null())
                    .col(ColumnDef::new(Users::City).string_len(255).null())
                    .col(ColumnDef::new(Users::Department).string_len(255).null())
                    .col(ColumnDef::new(Users::Position).string_len(255).null())
                    .col(ColumnDef::new(Users::Company).string_len(255).null())
                    .col(ColumnDef::new(Users::WorkContact).string_len(255).null())
                    .col(ColumnDef::new(Users::StructureUid).string_len(255).null())
                    .col(ColumnDef::new(Users::Language).string_len(8).null())
                    .col(ColumnDef::new(Users::FacebookId).string_len(255).null())
                    .col(ColumnDef::new(Users::GoogleId).string_len(255).null())
                    .col(ColumnDef::new(Users::EmploymentStartDate).date().null())
                    .col(ColumnDef::new(Users::EmploymentEndDate).date().null())
                    .col(ColumnDef::new(Users::PositionAssignedDate).date().null())
                    .col(ColumnDef::new(Users::CustomInfo).json().null())
                    .col(ColumnDef::new(Users::SearchKey).text().not_null())
                    .col(
                        ColumnDef::new(Users::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Users::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns, unique) in [
            (
                "ux_users_tenant_source_external_id",
                &[Users::Tenant, Users::Source, Users::ExternalId][..],
                true,
            ),
            (
                "ux_users_tenant_email_key",
                &[Users::Tenant, Users::EmailKey][..],
                true,
            ),
            (
                "ux_users_tenant_login_key",
                &[Users::Tenant, Users::LoginKey][..],
                true,
            ),
            (
                "ix_users_tenant_department",
                &[Users::Tenant, Users::Department][..],
                false,
            ),
            (
                "ix_users_tenant_active",
                &[Users::Tenant, Users::Active][..],
                false,
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(Users::Table);
            for column in columns {
                index.col(*column);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(UserTags::Table)
                    .col(ColumnDef::new(UserTags::UserId).big_integer().not_null())
                    .col(ColumnDef::new(UserTags::Tag).text().not_null())
                    .col(ColumnDef::new(UserTags::Tenant).string_len(64).not_null())
                    .primary_key(Index::create().col(UserTags::UserId).col(UserTags::Tag))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_tags_user")
                            .from(UserTags::Table, UserTags::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_user_tags_tenant_tag")
                    .table(UserTags::Table)
                    .col(UserTags::Tenant)
                    .col(UserTags::Tag)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserAttributes::Table)
                    .col(
                        ColumnDef::new(UserAttributes::UserId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UserAttributes::Name)
                            .string_len(100)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(UserAttributes::Tenant)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(ColumnDef::new(UserAttributes::Value).text().not_null())
                    .col(
                        ColumnDef::new(UserAttributes::Kind)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(UserAttributes::Class).string_len(100).null())
                    .primary_key(
                        Index::create()
                            .col(UserAttributes::UserId)
                            .col(UserAttributes::Name),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_user_attributes_user")
                            .from(UserAttributes::Table, UserAttributes::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_user_attributes_tenant_name")
                    .table(UserAttributes::Table)
                    .col(UserAttributes::Tenant)
                    .col(UserAttributes::Name)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            UserAttributes::Table.into_iden(),
            UserTags::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Users {
    Table,
    Id,
    Tenant,
    Source,
    ExternalId,
    Email,
    EmailKey,
    Login,
    LoginKey,
    FirstName,
    MiddleName,
    LastName,
    Title,
    PasswordHash,
    BirthDate,
    Gender,
    Active,
    Phone,
    City,
    Department,
    Position,
    Company,
    WorkContact,
    StructureUid,
    Language,
    FacebookId,
    GoogleId,
    EmploymentStartDate,
    EmploymentEndDate,
    PositionAssignedDate,
    CustomInfo,
    SearchKey,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UserTags {
    Table,
    UserId,
    Tag,
    Tenant,
}

#[derive(DeriveIden)]
enum UserAttributes {
    Table,
    UserId,
    Name,
    Tenant,
    Value,
    Kind,
    Class,
}
