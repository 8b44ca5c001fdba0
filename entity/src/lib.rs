//! Database entities of Roster. Each table has its own module; the application never writes
//! SQL strings for these tables, it goes through these models and `sea-query`.

pub mod approver_links;
pub mod import_job_chunks;
pub mod import_job_claims;
pub mod import_job_deactivations;
pub mod import_job_images;
pub mod import_job_keys;
pub mod import_jobs;
pub mod learning_track_tags;
pub mod learning_tracks;
pub mod scim_groups;
pub mod track_assignments;
pub mod track_completions;
pub mod user_attributes;
pub mod user_tags;
pub mod users;
