pub use sea_orm_migration::prelude::*;

mod m20261101_000001_users;
mod m20261102_000001_approver_links;
mod m20261103_000001_learning_tracks;
mod m20261104_000001_import_jobs;
mod m20261124_000001_users_external_id;
mod m20261125_000001_job_files;
mod m20261125_000002_job_sync;
mod m20261126_000001_job_images;
mod m20261127_000001_approver_links_tenant_index;
mod m20261128_000001_job_failures;
mod m20261207_000001_job_chunks;
mod m20261208_000001_scim_groups;
mod m20261209_000001_import_digest;
mod m20261210_000001_chunk_claims;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261101_000001_users::Migration),
            Box::new(m20261102_000001_approver_links::Migration),
            Box::new(m20261103_000001_learning_tracks::Migration),
            Box::new(m20261104_000001_import_jobs::Migration),
            Box::new(m20261124_000001_users_external_id::Migration),
            Box::new(m20261125_000001_job_files::Migration),
            Box::new(m20261125_000002_job_sync::Migration),
            Box::new(m20261126_000001_job_images::Migration),
            Box::new(m20261127_000001_approver_links_tenant_index::Migration),
            Box::new(m20261128_000001_job_failures::Migration),
            Box::new(m20261207_000001_job_chunks::Migration),
            Box::new(m20261208_000001_scim_groups::Migration),
            Box::new(m20261209_000001_import_digest::Migration),
            Box::new(m20261210_000001_chunk_claims::Migration),
        ]
    }
}

pub use sea_orm_migration::MigrationStatus;
