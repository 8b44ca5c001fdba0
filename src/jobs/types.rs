//! A job's types: its status, kind, phase and options, the counts of what it did, and
//! what it did with each row; and what a stored job shows of them.

use entity::import_jobs;

use crate::error::{AppError, AppResult, FieldError};
use crate::users::import::{ImportMode, MatchBy, RowAction, UserImportOptions};
use crate::validate::{Lines, Problem, Problems, check_characters};

/// Longest idempotency key and description.
const KEY_MAX_LEN: usize = 255;
const DESCRIPTION_MAX_LEN: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    CompletedWithErrors,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::CompletedWithErrors => "COMPLETED_WITH_ERRORS",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn from_stored(text: &str) -> Self {
        [
            Self::Queued,
            Self::Running,
            Self::Completed,
            Self::CompletedWithErrors,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
        .unwrap_or(Self::Failed)
    }

    /// A job in this status never changes again.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    UserImport,
    Revert,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserImport => "USER_IMPORT",
            Self::Revert => "REVERT",
        }
    }

    pub fn from_stored(text: &str) -> Self {
        if text == "REVERT" {
            Self::Revert
        } else {
            Self::UserImport
        }
    }
}

/// Where a running job stands: deciding and writing users, then setting approvers, then
/// (a revert) removing the users its job created, then finishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Users,
    Links,
    Removals,
    Done,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Users => "USERS",
            Self::Links => "LINKS",
            Self::Removals => "REMOVALS",
            Self::Done => "DONE",
        }
    }

    pub fn from_stored(text: &str) -> Self {
        match text {
            "LINKS" => Self::Links,
            "REMOVALS" => Self::Removals,
            "DONE" => Self::Done,
            _ => Self::Users,
        }
    }
}

/// The options of a bulk job.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    pub user: UserImportOptions,
    /// All rows or none: one failed row fails the job and nothing is written.
    pub atomic: bool,
    /// At the end, list every link of the tenant whose approver is inactive.
    pub run_integrity_check: bool,
    pub idempotency_key: Option<String>,
    pub description: Option<String>,
    /// Sync mode: at the end, users of the job's sources that no row names become inactive.
    pub deactivate_missing: bool,
    /// Percent of a source's active users above which sync mode deactivates nobody.
    pub change_threshold: Option<i32>,
}

impl JobOptions {
    pub(super) fn check(&self) -> AppResult<()> {
        let mut problems = Problems::default();
        match self.change_threshold {
            Some(_) if !self.deactivate_missing => problems.add(
                "options.changeThreshold",
                Problem::new("NOT_SUPPORTED", "only applies with deactivateMissing: true"),
            ),
            Some(percent) if !(0..=100).contains(&percent) => problems.add(
                "options.changeThreshold",
                Problem::new("OUT_OF_RANGE", "must be a percentage from 0 to 100"),
            ),
            _ => {}
        }
        if self.deactivate_missing && self.atomic {
            problems.add(
                "options.deactivateMissing",
                Problem::new(
                    "NOT_SUPPORTED",
                    "a sync job cannot be atomic: run it as a dry run first to see who it deactivates",
                ),
            );
        }
        // A description may span lines; a key is one line.
        let texts = [
            (
                "options.idempotencyKey",
                &self.idempotency_key,
                KEY_MAX_LEN,
                Lines::One,
            ),
            (
                "options.description",
                &self.description,
                DESCRIPTION_MAX_LEN,
                Lines::Many,
            ),
        ];
        for (path, text, max, lines) in texts {
            let Some(text) = text else { continue };
            if text.trim().is_empty() {
                problems.add(path, Problem::new("REQUIRED", "must not be blank"));
            } else if text.chars().count() > max {
                problems.add(
                    path,
                    Problem::new("TOO_LONG", format!("must be at most {max} characters")),
                );
            } else {
                problems.check(path, check_characters(text, lines));
            }
        }
        problems.finish()
    }
}

/// Counts of what a job did, as `ImportSummary` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub created: i32,
    pub updated: i32,
    pub unchanged: i32,
    pub skipped: i32,
    /// Rows that did not succeed: refused, or their approvers could not be set.
    pub failed: i32,
    pub blocked: i32,
    pub unblocked: i32,
    pub deactivated: i32,
    /// Users removed (a revert removes the users its job created).
    pub deleted: i32,
}

impl Summary {
    pub fn of(job: &import_jobs::Model) -> Self {
        Self {
            created: job.created,
            updated: job.updated,
            unchanged: job.unchanged,
            skipped: job.skipped,
            failed: job.failed,
            blocked: job.blocked,
            unblocked: job.unblocked,
            deactivated: job.deactivated,
            deleted: job.deleted,
        }
    }

    pub(super) fn add_to(&self, job: &mut import_jobs::Model) {
        job.created += self.created;
        job.updated += self.updated;
        job.unchanged += self.unchanged;
        job.skipped += self.skipped;
        job.failed += self.failed;
        job.blocked += self.blocked;
        job.unblocked += self.unblocked;
        job.deactivated += self.deactivated;
        job.deleted += self.deleted;
    }

    pub(super) fn action(&mut self, action: RowAction, by: i32) {
        match action {
            RowAction::Created => self.created += by,
            RowAction::Updated => self.updated += by,
            RowAction::Unchanged => self.unchanged += by,
            RowAction::Skipped => self.skipped += by,
            RowAction::Deleted => self.deleted += by,
            RowAction::Failed => {}
        }
    }

    /// Counts a row's result for the first time.
    pub(super) fn count(&mut self, row: &RowResult) {
        self.action(row.action, 1);
        self.failed += i32::from(!row.success);
        self.blocked += i32::from(row.blocked);
        self.unblocked += i32::from(row.unblocked);
    }

    /// Counts the change of a row's result from `before` to `after` (the second pass).
    pub(super) fn recount(&mut self, before: &RowResult, after: &RowResult) {
        self.action(before.action, -1);
        self.action(after.action, 1);
        self.failed += i32::from(!after.success) - i32::from(!before.success);
    }
}

/// What a job did with one row.
#[derive(Debug, Clone)]
pub struct RowResult {
    pub index: i32,
    pub lookup_key: String,
    pub action: RowAction,
    pub success: bool,
    pub user_id: Option<i64>,
    pub errors: Vec<FieldError>,
    /// Approvers are still to be set in the second pass.
    pub links_pending: bool,
    pub blocked: bool,
    pub unblocked: bool,
}

impl RowResult {
    pub(super) fn failed(index: i32, lookup_key: String, errors: Vec<FieldError>) -> Self {
        Self {
            index,
            lookup_key,
            action: RowAction::Failed,
            success: false,
            user_id: None,
            errors,
            links_pending: false,
            blocked: false,
            unblocked: false,
        }
    }
}

/// The field errors an error stands for, as a row reports them.
pub fn row_errors(error: &AppError) -> Vec<FieldError> {
    match error {
        AppError::BadUserInput { field_errors, .. } | AppError::Conflict { field_errors, .. }
            if !field_errors.is_empty() =>
        {
            field_errors.clone()
        }
        other => vec![FieldError {
            field: None,
            code: other.code().as_str().to_owned(),
            message: match other {
                AppError::Internal(_) => "internal error".to_owned(),
                other => other.to_string(),
            },
        }],
    }
}

pub fn mode_name(mode: ImportMode) -> &'static str {
    match mode {
        ImportMode::CreateOnly => "CREATE_ONLY",
        ImportMode::UpdateOnly => "UPDATE_ONLY",
        ImportMode::Upsert => "UPSERT",
    }
}

pub fn match_name(match_by: MatchBy) -> &'static str {
    match match_by {
        MatchBy::ExternalId => "EXTERNAL_ID",
        MatchBy::Email => "EMAIL",
    }
}

/// The per-user options a stored job was submitted with.
pub(super) fn user_options(job: &import_jobs::Model) -> UserImportOptions {
    UserImportOptions {
        mode: match job.mode.as_str() {
            "CREATE_ONLY" => ImportMode::CreateOnly,
            "UPDATE_ONLY" => ImportMode::UpdateOnly,
            _ => ImportMode::Upsert,
        },
        match_by: if job.match_by == "EMAIL" {
            MatchBy::Email
        } else {
            MatchBy::ExternalId
        },
        replace: job.replace_fields,
        dry_run: job.dry_run,
    }
}

/// How far a job is, from 0 to 1: both passes count, each row once per pass it needs.
pub fn progress(job: &import_jobs::Model) -> f64 {
    let status = JobStatus::from_stored(&job.status);
    // A cancelled job stays where it stopped.
    if status.is_final() && status != JobStatus::Cancelled {
        return 1.0;
    }
    let work = f64::from(job.total) + f64::from(job.links_total);
    if work == 0.0 {
        return 0.0;
    }
    ((f64::from(job.processed) + f64::from(job.links_processed)) / work).min(1.0)
}

/// The integrity warnings stored with a job.
pub fn integrity_warnings(job: &import_jobs::Model) -> Vec<String> {
    job.integrity_warnings
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// The warnings stored with a job.
pub fn warnings(job: &import_jobs::Model) -> Vec<String> {
    job.warnings
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// The path of a job's failed rows as CSV, when it has some (a revert has none to send
/// again).
pub fn failed_rows_csv_path(job: &import_jobs::Model) -> Option<String> {
    (job.failed > 0 && JobKind::from_stored(&job.kind) != JobKind::Revert)
        .then(|| format!("/jobs/{}/failed-rows.csv", job.id))
}
