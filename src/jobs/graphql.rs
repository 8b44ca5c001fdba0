//! The GraphQL face of bulk jobs: `importUsers`, `importUsersCsv`, `importJob`,
//! `importJobs`, `cancelImportJob`, and the `importJobProgress` subscription.

pub mod users_variable;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::connection::{Connection, ConnectionNameType, Edge, EmptyFields};
use async_graphql::{Context, Enum, ID, Object, OutputType, SimpleObject, Subscription, Upload};
use chrono::{DateTime, Utc};
use entity::import_jobs as jobs;
use futures_util::Stream;
use futures_util::stream::{BoxStream, StreamExt};
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast;

use super::{JobOptions, Queue, RowResult, SubmittedRow, Submitter, Summary, store};
use crate::auth::{Principal, Role, RoleGuard, TenantId, principal};
use crate::error::{AppError, AppResult, FieldError};
use crate::graphql::scalars::{IdCursor, PageArgs};
use crate::graphql::{FieldErrorView, cost};
use crate::users::graphql::{ImportOptions, RowAction, User, UserImportInput};
use crate::users::import::ImportRow as InputRow;
use crate::users::store as user_store;

/// How often a watcher reads a job from the database, to see progress made by workers of
/// other processes.
const WATCH_POLL: Duration = Duration::from_millis(500);

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "super::JobStatus")]
pub enum JobStatus {
    /// Accepted and durable; waiting for a worker.
    Queued,
    Running,
    /// Every row succeeded.
    Completed,
    /// Some rows failed; the others were applied.
    CompletedWithErrors,
    /// The job failed as a whole (see `errorMessage`).
    Failed,
    Cancelled,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "super::JobKind")]
pub enum JobKind {
    UserImport,
    Revert,
}

/// What a job did, in rows.
#[derive(SimpleObject)]
pub struct ImportSummary {
    pub created: i32,
    pub updated: i32,
    pub unchanged: i32,
    /// Ruled out by the mode (`CREATE_ONLY` and the user exists, `UPDATE_ONLY` and it does
    /// not), not written because an atomic job failed, or, in a revert, users left as they
    /// are (changed since the job, say).
    pub skipped: i32,
    /// Rows with `success: false`. A row whose user was written but whose approvers were
    /// refused counts here and under its action.
    pub failed: i32,
    pub blocked: i32,
    pub unblocked: i32,
    pub deactivated: i32,
    /// Users removed: a revert removes the users its job created.
    pub deleted: i32,
}

impl From<Summary> for ImportSummary {
    fn from(s: Summary) -> Self {
        Self {
            created: s.created,
            updated: s.updated,
            unchanged: s.unchanged,
            skipped: s.skipped,
            failed: s.failed,
            blocked: s.blocked,
            unblocked: s.unblocked,
            deactivated: s.deactivated,
            deleted: s.deleted,
        }
    }
}

/// One row of a job, and what became of it.
pub struct ImportRow(RowResult, Option<entity::users::Model>);

#[Object]
impl ImportRow {
    /// 0-based position of the row in the input; in a `REVERT` job, of the row of its job
    /// that first wrote the user (rows past the input are users sync mode deactivated).
    async fn index(&self) -> i32 {
        self.0.index
    }
    /// `source:externalId` as the row names its user; for a row of a CSV file, followed by
    /// its line in the file: `hr:e-17 (line 19)`.
    async fn lookup_key(&self) -> &str {
        &self.0.lookup_key
    }
    async fn action(&self) -> RowAction {
        self.0.action.into()
    }
    /// False when the row was refused, when its approvers could not be set, or, in a revert,
    /// when its user was left as it is.
    async fn success(&self) -> bool {
        self.0.success
    }
    /// The user as stored now; `null` for a failed row, or one a dry run would create.
    async fn user(&self) -> Option<User> {
        self.1.clone().map(User::from)
    }
    /// Why the row failed (or was skipped), each with the input path of its field, e.g.
    /// `users[12].email`, or for a row of a CSV file the file's column, e.g. `secondname`.
    /// A revert's reasons have codes: `CHANGED_SINCE`, `GONE`, `APPROVES_FOR`,
    /// `HAS_COMPLETIONS`, `TAKEN` (an email, login or key now another user's).
    async fn errors(&self) -> Vec<FieldErrorView> {
        self.0
            .errors
            .iter()
            .cloned()
            .map(FieldErrorView::from)
            .collect()
    }
}

/// `totalCount` of a page of rows.
pub struct RowsTotal {
    tenant: TenantId,
    job: i64,
    only_failed: bool,
}

#[Object]
impl RowsTotal {
    /// Rows on all pages: processed so far, or only the failed ones.
    async fn total_count(&self, ctx: &Context<'_>) -> AppResult<i64> {
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let count =
            super::chunks::count_results(db, &self.tenant, self.job, self.only_failed).await?;
        Ok(i64::try_from(count).unwrap_or(i64::MAX))
    }
}

pub type ImportRowConnection = Connection<IdCursor, ImportRow, RowsTotal>;

/// A bulk import job.
pub struct ImportJob(pub jobs::Model);

#[Object]
impl ImportJob {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn kind(&self) -> JobKind {
        super::JobKind::from_stored(&self.0.kind).into()
    }
    async fn status(&self) -> JobStatus {
        super::JobStatus::from_stored(&self.0.status).into()
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// A dry run decides and reports every row and writes nothing.
    async fn dry_run(&self) -> bool {
        self.0.dry_run
    }
    /// All rows or none.
    async fn atomic(&self) -> bool {
        self.0.atomic
    }
    /// The job has finished and has rows that did not succeed, which `retryImportJob`
    /// would run again: its failed rows, every row of an atomic job that failed, or the
    /// rows a job that failed as a whole did not finish.
    async fn repeatable(&self) -> bool {
        super::repeatable(&self.0)
    }
    /// Sync mode: users of the job's sources that it does not name become inactive.
    async fn deactivate_missing(&self) -> bool {
        self.0.deactivate_missing
    }
    /// Sync mode's limit, in percent of a source's active users.
    async fn change_threshold(&self) -> Option<i32> {
        self.0.change_threshold
    }
    /// The users sync mode made inactive (in a dry run, would have), by id, `first` at a
    /// time (default 100, at most 500).
    #[graphql(complexity = "cost::page(first, 100, child_complexity)")]
    async fn deactivated_users(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: Option<i32>,
        after: Option<String>,
    ) -> AppResult<DeactivatedUserConnection> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let page = PageArgs::check(first, 100, 500, after)?;
        let mut ids =
            store::deactivated_page(db, &principal.tenant, self.0.id, page.after, page.limit + 1)
                .await?;
        let has_next = page.trim(&mut ids);
        let users = user_store::by_ids(db, &principal.tenant, &ids).await?;
        let mut connection = Connection::with_additional_fields(
            page.after.is_some(),
            has_next,
            DeactivatedTotal {
                total_count: self.0.deactivated,
            },
        );
        connection.edges.extend(ids.iter().filter_map(|id| {
            let user = users.get(id)?.clone();
            Some(Edge::new(IdCursor(*id), User::from(user)))
        }));
        Ok(connection)
    }
    /// The job whose rows this one runs again (`retryImportJob`).
    async fn retry_of(&self, ctx: &Context<'_>) -> AppResult<Option<ImportJob>> {
        let Some(id) = self.0.retry_of else {
            return Ok(None);
        };
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        Ok(store::find(db, &principal.tenant, id).await?.map(ImportJob))
    }
    /// `revertImportJob` would accept this job now: it has finished, wrote users and is
    /// not reverted already.
    async fn revertible(&self, ctx: &Context<'_>) -> AppResult<bool> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        match super::revert::check(db, &principal.tenant, &self.0).await {
            Ok(_) => Ok(true),
            Err(AppError::Conflict { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }
    /// The job a `REVERT` job undoes (`revertImportJob`).
    async fn revert_of(&self, ctx: &Context<'_>) -> AppResult<Option<ImportJob>> {
        let Some(id) = self.0.revert_of else {
            return Ok(None);
        };
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        Ok(store::find(db, &principal.tenant, id).await?.map(ImportJob))
    }
    /// The latest `REVERT` job of this job, if it has been reverted.
    async fn reverted_by(&self, ctx: &Context<'_>) -> AppResult<Option<ImportJob>> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        Ok(store::latest_revert(db, &principal.tenant, self.0.id)
            .await?
            .map(ImportJob))
    }
    /// Why the job failed as a whole.
    async fn error_message(&self) -> Option<&str> {
        self.0.error_message.as_deref()
    }
    /// The `sub` of the token that submitted the job.
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    /// Rows in the job.
    async fn total(&self) -> i32 {
        self.0.total
    }
    /// Rows whose user has been decided (and, unless a dry run, written).
    async fn processed(&self) -> i32 {
        self.0.processed
    }
    /// 0.0 … 1.0 over both passes: users, then the approvers of the rows that send some.
    async fn progress(&self) -> f64 {
        super::progress(&self.0)
    }
    async fn summary(&self) -> ImportSummary {
        Summary::of(&self.0).into()
    }
    /// The rows processed so far, in input order, `first` at a time (default 100, at most
    /// 500); `onlyFailed` keeps the rows with `success: false`.
    #[graphql(complexity = "cost::page(first, 100, child_complexity)")]
    async fn rows(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: Option<i32>,
        after: Option<String>,
        #[graphql(default = false)] only_failed: bool,
    ) -> AppResult<ImportRowConnection> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let page = PageArgs::check(first, 100, 500, after)?;
        let after = page.after.map(|idx| i32::try_from(idx).unwrap_or(i32::MAX));
        let mut rows = super::chunks::results_page(
            db,
            &principal.tenant,
            self.0.id,
            only_failed,
            after,
            page.limit + 1,
        )
        .await?;
        let has_next = page.trim(&mut rows);
        let ids: Vec<i64> = rows.iter().filter_map(|r| r.user_id).collect();
        let users = user_store::by_ids(db, &principal.tenant, &ids).await?;
        let mut connection = Connection::with_additional_fields(
            page.after.is_some(),
            has_next,
            RowsTotal {
                tenant: principal.tenant.clone(),
                job: self.0.id,
                only_failed,
            },
        );
        connection.edges.extend(rows.into_iter().map(|row| {
            let user = row.user_id.and_then(|id| users.get(&id).cloned());
            Edge::new(IdCursor(i64::from(row.index)), ImportRow(row, user))
        }));
        Ok(connection)
    }
    /// Approver links of the tenant whose approver is inactive, found at the end of the
    /// job (with `runIntegrityCheck`).
    async fn integrity_warnings(&self) -> Vec<String> {
        super::integrity_warnings(&self.0)
    }
    /// What the job noticed once rather than per row, e.g. the columns of a CSV file it
    /// does not know and ignored.
    async fn warnings(&self) -> Vec<String> {
        super::warnings(&self.0)
    }
    /// Where to download the job's failed rows as CSV plus an `errors` column, to fix and
    /// upload again with `importUsersCsv` (bearer auth, like the API): a CSV job's in the
    /// file's own columns and separator, an `importUsers` job's in this API's input names
    /// (lists as JSON, `clear` for fields sent as `null`). `null` while it has none, and for
    /// a revert.
    async fn failed_rows_csv_url(&self) -> Option<String> {
        super::failed_rows_csv_path(&self.0)
    }
}

pub type ImportJobConnection = Connection<IdCursor, ImportJob, JobsTotal>;

/// `totalCount` of the users a sync job deactivated.
#[derive(SimpleObject)]
pub struct DeactivatedTotal {
    total_count: i32,
}

/// Names the connection of `deactivatedUsers` apart from `users`'.
pub struct DeactivatedUsers;

impl ConnectionNameType for DeactivatedUsers {
    fn type_name<T: OutputType>() -> String {
        "DeactivatedUserConnection".to_owned()
    }
}

pub type DeactivatedUserConnection =
    Connection<IdCursor, User, DeactivatedTotal, EmptyFields, DeactivatedUsers>;

/// `totalCount` of a page of jobs.
pub struct JobsTotal {
    tenant: TenantId,
    statuses: Vec<super::JobStatus>,
}

#[Object]
impl JobsTotal {
    async fn total_count(&self, ctx: &Context<'_>) -> AppResult<i64> {
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let count = store::count_jobs(db, &self.tenant, &self.statuses).await?;
        Ok(i64::try_from(count).unwrap_or(i64::MAX))
    }
}

/// Who submits a job: the caller.
fn submitter(principal: &Principal) -> Submitter<'_> {
    Submitter {
        tenant: &principal.tenant,
        subject: &principal.subject,
    }
}

fn job_id(id: &ID) -> AppResult<i64> {
    id.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        AppError::invalid_fields(vec![FieldError::new(
            "id",
            "INVALID_ID",
            format!("{:?} is not a job id", id.as_str()),
        )])
    })
}

#[derive(Default)]
pub struct JobsQuery;

#[Object]
impl JobsQuery {
    /// One job of the caller's tenant, or `null` (no such job, or one deleted once it was
    /// past its retention, 30 days after it finished by default).
    async fn import_job(&self, ctx: &Context<'_>, id: ID) -> AppResult<Option<ImportJob>> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        Ok(store::find(db, &principal.tenant, job_id(&id)?)
            .await?
            .map(ImportJob))
    }

    /// The tenant's jobs, newest first, `first` at a time (default 20, at most 100);
    /// `status` keeps jobs in any of the given statuses.
    #[graphql(complexity = "cost::page(first, 20, child_complexity)")]
    async fn import_jobs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        status: Option<Vec<JobStatus>>,
    ) -> AppResult<ImportJobConnection> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let page = PageArgs::check(first, 20, 100, after)?;
        let statuses: Vec<super::JobStatus> = status
            .unwrap_or_default()
            .into_iter()
            .map(Into::into)
            .collect();
        let mut rows =
            store::jobs_page(db, &principal.tenant, &statuses, page.after, page.limit + 1).await?;
        let has_next = page.trim(&mut rows);
        let mut connection = Connection::with_additional_fields(
            page.after.is_some(),
            has_next,
            JobsTotal {
                tenant: principal.tenant.clone(),
                statuses,
            },
        );
        connection.edges.extend(
            rows.into_iter()
                .map(|job| Edge::new(IdCursor(job.id), ImportJob(job))),
        );
        Ok(connection)
    }
}

#[derive(Default)]
pub struct JobsMutation;

#[Object]
impl JobsMutation {
    /// Imports up to 100,000 users as a background job and answers at once with the
    /// `QUEUED` job, its input already stored. Rows are independent: a bad row fails alone
    /// (see `rows(onlyFailed: true)`). Approvers may name users later in the same job.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn import_users(
        &self,
        ctx: &Context<'_>,
        users: Vec<UserImportInput>,
        options: Option<ImportOptions>,
    ) -> AppResult<ImportJob> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let queue = ctx.data_unchecked::<Queue>();
        let options = job_options(options.unwrap_or_default());
        // Users sent in a variable arrive already read (see `users_variable`), `users` empty.
        let rows = match ctx
            .data_opt::<users_variable::DecodedUsers>()
            .and_then(users_variable::DecodedUsers::take)
        {
            Some(rows) => rows,
            None => users
                .into_iter()
                .map(|user| SubmittedRow::new(&InputRow::from(user)))
                .collect::<AppResult<_>>()?,
        };
        let by = submitter(principal);
        Ok(ImportJob(
            super::submit(db, queue, by, options, rows).await?,
        ))
    }

    /// Imports a CSV file (GraphQL multipart request) of up to 1,000,000 users as a
    /// background job, like `importUsers`. The header names the columns, in this API's
    /// names (those of `GET /exports/users.csv`, `attr:<name>` or `attr:<name>:<TYPE>` for
    /// an attribute) or seed
    /// 001's (`uid`, `secondname`, `firstname`, `patronymic`, `is_active` 0/1, `gender` 0/1,
    /// `birth_date`, `tags` comma-separated, `user_field1`…`user_field5`, `customInfo` in
    /// base64, `manager_uid`…), in any case. UTF-8 with or without a byte order mark,
    /// separated by `,`, `;` or tabs. An empty cell leaves the field as it is; `attributes`
    /// and `approvers` take the JSON list of `UserImportInput`, and `clear` names the fields
    /// a row clears (as `null` would). Columns it
    /// does not know are listed once in the job's `warnings`; rows report their line in
    /// `lookupKey`. A file that is not CSV, or lacks `externalId`, `email`, `firstName` or
    /// `lastName`, is refused with what is missing, and nothing is stored.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn import_users_csv(
        &self,
        ctx: &Context<'_>,
        file: Upload,
        options: Option<ImportOptions>,
    ) -> AppResult<ImportJob> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let queue = ctx.data_unchecked::<Queue>();
        let file = file.value(ctx).map_err(|e| {
            AppError::invalid_fields(vec![FieldError::new(
                "file",
                "INVALID_FILE",
                format!("no file: {e}"),
            )])
        })?;
        let by = submitter(principal);
        let options = job_options(options.unwrap_or_default());
        Ok(ImportJob(
            super::submit_csv(db, queue, by, options, file.content).await?,
        ))
    }

    /// Runs the rows of a finished job that did not succeed again, as a new job with the
    /// same options (`retryOf` names the original; rows of a CSV job keep their line). A
    /// job still queued or running is a `CONFLICT` (`NOT_FINISHED`), and so is one whose
    /// rows all succeeded (`NOTHING_TO_RETRY`).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn retry_import_job(&self, ctx: &Context<'_>, id: ID) -> AppResult<ImportJob> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let queue = ctx.data_unchecked::<Queue>();
        let by = submitter(principal);
        Ok(ImportJob(super::retry(db, queue, by, job_id(&id)?).await?))
    }

    /// Undoes a finished job with a new `REVERT` job (`revertOf` names the original): each
    /// user the job wrote is put back as it was before it (fields, tags, attributes,
    /// approvers), users it created are removed, users a sync job deactivated are active
    /// again. A user changed again since the job is left as it is, and its row says so
    /// (`SKIPPED`, `CHANGED_SINCE`); so is a created user who now approves for someone or
    /// has track completions. Reverting a revert applies its job again. A job still queued
    /// or running is a `CONFLICT` (`NOT_FINISHED`), and so are a dry run or a job that
    /// changed nobody (`NOTHING_TO_REVERT`) and a job already reverted
    /// (`ALREADY_REVERTED`, unless that revert was cancelled or failed).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn revert_import_job(&self, ctx: &Context<'_>, id: ID) -> AppResult<ImportJob> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let queue = ctx.data_unchecked::<Queue>();
        let by = submitter(principal);
        Ok(ImportJob(
            super::revert::submit(db, queue, by, job_id(&id)?).await?,
        ))
    }

    /// Cancels a job: a queued job never starts; a running one stops after the chunk it is
    /// writing, and what it committed stays (see `summary` and `rows`). Cancelling a
    /// cancelled job answers it as it is. A finished job is a `CONFLICT` (`FINISHED`), and
    /// so is a dry run or atomic job already running (`NOT_CANCELLABLE`): it is one
    /// transaction.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn cancel_import_job(&self, ctx: &Context<'_>, id: ID) -> AppResult<ImportJob> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let queue = ctx.data_unchecked::<Queue>();
        Ok(ImportJob(
            super::cancel(db, queue, &principal.tenant, job_id(&id)?).await?,
        ))
    }
}

fn job_options(options: ImportOptions) -> JobOptions {
    JobOptions {
        user: options.user(),
        atomic: options.atomic,
        run_integrity_check: options.run_integrity_check,
        idempotency_key: options.idempotency_key,
        description: options.description,
        deactivate_missing: options.deactivate_missing,
        change_threshold: options.change_threshold,
    }
}

#[derive(Default)]
pub struct JobsSubscription;

#[Subscription]
impl JobsSubscription {
    /// The job as it stands now, then again after each step a worker commits (in this
    /// process or another); the last event has a final status, and the stream ends.
    async fn import_job_progress(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<BoxStream<'static, AppResult<ImportJob>>> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>().clone();
        let queue = ctx.data_unchecked::<Queue>();
        let id = job_id(&id)?;
        let events = queue.subscribe();
        let job = store::find(&db, &principal.tenant, id)
            .await?
            .ok_or_else(|| super::not_found(id))?;
        Ok(watch(db, principal.tenant.clone(), job, events).boxed())
    }
}

/// Each new version of a job, from `first` until its final status.
fn watch(
    db: DatabaseConnection,
    tenant: TenantId,
    first: jobs::Model,
    events: broadcast::Receiver<Arc<jobs::Model>>,
) -> impl Stream<Item = AppResult<ImportJob>> {
    struct Watch {
        db: DatabaseConnection,
        tenant: TenantId,
        id: i64,
        last: Option<i32>,
        next: Option<jobs::Model>,
        events: broadcast::Receiver<Arc<jobs::Model>>,
        done: bool,
    }
    let state = Watch {
        db,
        tenant,
        id: first.id,
        last: None,
        next: Some(first),
        events,
        done: false,
    };
    futures_util::stream::unfold(state, |mut w| async move {
        loop {
            if w.done {
                return None;
            }
            if let Some(job) = w.next.take()
                && w.last.is_none_or(|last| job.version > last)
            {
                w.last = Some(job.version);
                w.done = super::JobStatus::from_stored(&job.status).is_final();
                return Some((Ok(ImportJob(job)), w));
            }
            tokio::select! {
                event = w.events.recv() => match event {
                    Ok(job) if job.id == w.id && job.tenant == w.tenant.as_str() => {
                        w.next = Some((*job).clone());
                        continue;
                    }
                    Ok(_) => continue,
                    // Missed some events, or no more will come: read the database.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        tokio::time::sleep(WATCH_POLL).await;
                    }
                },
                () = tokio::time::sleep(WATCH_POLL) => {}
            }
            match store::find(&w.db, &w.tenant, w.id).await {
                Ok(Some(job)) => w.next = Some(job),
                Ok(None) => {
                    w.done = true;
                    return Some((Err(super::not_found(w.id)), w));
                }
                Err(error) => {
                    w.done = true;
                    return Some((Err(error.into()), w));
                }
            }
        }
    })
}
