//! Learning tracks, their tags, who is assigned which, and completions.
//!
//! Instants of assignments and completions are epoch milliseconds (`BIGINT`), so that the
//! compliance rules (`completedAt + validityDays`, …) are the same integer arithmetic in
//! SQLite and PostgreSQL, inside one aggregate query.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LearningTracks::Table)
                    .col(
                        ColumnDef::new(LearningTracks::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(LearningTracks::Tenant)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(LearningTracks::Name)
                            .string_len(200)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(LearningTracks::ValidityDays)
                            .integer()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(LearningTracks::ExpiringSoonDays)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(LearningTracks::DueDays).integer().null())
                    .col(
                        ColumnDef::new(LearningTracks::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(LearningTracks::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_learning_tracks_tenant_name")
                    .table(LearningTracks::Table)
                    .col(LearningTracks::Tenant)
                    .col(LearningTracks::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LearningTrackTags::Table)
                    .col(
                        ColumnDef::new(LearningTrackTags::TrackId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(LearningTrackTags::Tag).text().not_null())
                    .col(
                        ColumnDef::new(LearningTrackTags::Tenant)
                            .string_len(64)
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(LearningTrackTags::TrackId)
                            .col(LearningTrackTags::Tag),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_learning_track_tags_track")
                            .from(LearningTrackTags::Table, LearningTrackTags::TrackId)
                            .to(LearningTracks::Table, LearningTracks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_learning_track_tags_tenant_tag")
                    .table(LearningTrackTags::Table)
                    .col(LearningTrackTags::Tenant)
                    .col(LearningTrackTags::Tag)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TrackAssignments::Table)
                    .col(
                        ColumnDef::new(TrackAssignments::UserId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TrackAssignments::TrackId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TrackAssignments::Tenant)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TrackAssignments::AssignedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(TrackAssignments::UserId)
                            .col(TrackAssignments::TrackId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_track_assignments_user")
                            .from(TrackAssignments::Table, TrackAssignments::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_track_assignments_track")
                            .from(TrackAssignments::Table, TrackAssignments::TrackId)
                            .to(LearningTracks::Table, LearningTracks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_track_assignments_tenant_track")
                    .table(TrackAssignments::Table)
                    .col(TrackAssignments::Tenant)
                    .col(TrackAssignments::TrackId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TrackCompletions::Table)
                    .col(
                        ColumnDef::new(TrackCompletions::UserId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TrackCompletions::TrackId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TrackCompletions::CompletedAtMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TrackCompletions::Tenant)
                            .string_len(64)
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(TrackCompletions::UserId)
                            .col(TrackCompletions::TrackId)
                            .col(TrackCompletions::CompletedAtMs),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_track_completions_user")
                            .from(TrackCompletions::Table, TrackCompletions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_track_completions_track")
                            .from(TrackCompletions::Table, TrackCompletions::TrackId)
                            .to(LearningTracks::Table, LearningTracks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_track_completions_tenant")
                    .table(TrackCompletions::Table)
                    .col(TrackCompletions::Tenant)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            TrackCompletions::Table.into_iden(),
            TrackAssignments::Table.into_iden(),
            LearningTrackTags::Table.into_iden(),
            LearningTracks::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum LearningTracks {
    Table,
    Id,
    Tenant,
    Name,
    ValidityDays,
    ExpiringSoonDays,
    DueDays,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum LearningTrackTags {
    Table,
    TrackId,
    Tag,
    Tenant,
}

#[derive(DeriveIden)]
enum TrackAssignments {
    Table,
    UserId,
    TrackId,
    Tenant,
    AssignedAtMs,
}

#[derive(DeriveIden)]
enum TrackCompletions {
    Table,
    UserId,
    TrackId,
    CompletedAtMs,
    Tenant,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}
