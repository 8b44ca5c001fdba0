//! One bulk import job of a tenant: its options, where it stands, and who runs it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "import_jobs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant: String,
    /// `USER_IMPORT` or `REVERT`.
    pub kind: String,
    /// `QUEUED`, `RUNNING`, `COMPLETED`, `COMPLETED_WITH_ERRORS`, `FAILED` or `CANCELLED`.
    pub status: String,
    pub description: Option<String>,
    /// `ImportMode` and `MatchBy` of the options, by their GraphQL names.
    pub mode: String,
    pub match_by: String,
    pub replace_fields: bool,
    pub dry_run: bool,
    pub atomic: bool,
    pub run_integrity_check: bool,
    pub idempotency_key: Option<String>,
    /// SHA-256 (hex) of the options and rows, to tell a repeated submission from another.
    pub payload_hash: Option<String>,
    /// The `sub` of the token that submitted the job.
    pub created_by: String,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub total: i32,
    /// Rows whose user has been decided and written.
    pub processed: i32,
    /// Rows whose approvers are set in the second pass, and how many of them are done.
    pub links_total: i32,
    pub links_processed: i32,
    /// `USERS`, `LINKS` or `DONE`.
    pub phase: String,
    /// The next row index of the phase.
    pub cursor: i32,
    pub created: i32,
    pub updated: i32,
    pub unchanged: i32,
    pub skipped: i32,
    pub failed: i32,
    pub blocked: i32,
    pub unblocked: i32,
    pub deactivated: i32,
    pub error_message: Option<String>,
    /// JSON array of strings.
    pub integrity_warnings: Option<String>,
    /// The worker that holds the job, and until when (epoch ms); after a failed run, when it
    /// is tried again.
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    /// How often a worker claimed the job: its first run, and each resumption after a
    /// restart, a takeover or a failure. A claim is no failure.
    pub attempts: i32,
    /// Grows with every change of the row, so that watchers see each step once.
    pub version: i32,
    /// The header of a CSV job's file (JSON: names, separator, byte order mark).
    pub csv_columns: Option<String>,
    /// What the job noticed once rather than per row (JSON array of strings).
    pub warnings: Option<String>,
    /// Sync mode: users of the job's sources absent from it become inactive at the end.
    pub deactivate_missing: bool,
    /// Percent of a source's users above which sync mode deactivates nobody.
    pub change_threshold: Option<i32>,
    /// The job whose failed rows this one runs again.
    pub retry_of: Option<i64>,
    /// The job a `REVERT` job undoes.
    pub revert_of: Option<i64>,
    /// Users the job removed (a revert removes the users its job created).
    pub deleted: i32,
    /// Runs in a row that ended in a server error; a committed chunk sets it back to 0.
    pub failures: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
