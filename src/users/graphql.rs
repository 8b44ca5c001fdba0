//! The GraphQL face of the user domain: types, loaders and resolvers, each a thin
//! translation to and from the domain.

use std::collections::HashMap;

use async_graphql::connection::{Connection, Edge};
use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Enum, ID, InputObject, Json, MaybeUndefined, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::users;
use sea_orm::DatabaseConnection;

use super::domain;
use super::import::{self, ImportRow, UserImportOptions};
use super::lookup::UserKey;
use super::profile::{self, Patch, RawAttribute, RawUser};
use super::store::{self, UserFilter as DomainFilter};
use crate::approvers::graphql::{ApproverInput, ApproverLink, ApproversLoader, ManageesLoader};
use crate::approvers::store::{self as approver_store, ResolvedLink, Side};
use crate::approvers::{RawApprover, RawLinks, RawLookup};
use crate::auth::{Role, RoleGuard, TenantId, principal};
use crate::error::{AppError, AppResult, FieldError};
use crate::graphql::scalars::{Date, IdCursor, PageArgs};
use crate::graphql::{cost, request_now};
use crate::tracks;
use crate::tracks::graphql::{LearningTrackStatus, TrackProgress};

/// Page size of `users` when `first` is not given.
pub const DEFAULT_PAGE: i32 = 50;
/// Largest page of `users`.
pub const MAX_PAGE: i32 = 500;
/// Managees of one user when `first` is not given.
const MANAGEES_PAGE: i32 = 100;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "profile::Gender")]
pub enum Gender {
    Male,
    Female,
    Other,
}

/// User interface languages.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "profile::Language")]
pub enum Language {
    En,
    Uk,
    De,
    Es,
    Et,
    Tr,
    Ru,
    Nl,
    Fr,
}

/// What an attribute's value is checked against.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "domain::AttributeType")]
pub enum AttributeType {
    /// Any text up to 1000 characters.
    String,
    /// A decimal such as `-12.50`.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A `Date`; stored as `YYYY-MM-DD`.
    Date,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Default)]
#[graphql(remote = "import::ImportMode")]
pub enum ImportMode {
    /// Only new users; an existing one is a `CONFLICT`.
    CreateOnly,
    /// Only existing users; a missing one is `NOT_FOUND`.
    UpdateOnly,
    /// Create or update.
    #[default]
    Upsert,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Default)]
#[graphql(remote = "import::MatchBy")]
pub enum MatchBy {
    /// The user with the same `(source, externalId)`.
    #[default]
    ExternalId,
    /// The user with the same email (case-insensitive), else the same `(source,
    /// externalId)`. A user found by email takes the sent `source` and `externalId`.
    Email,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "import::RowAction")]
pub enum RowAction {
    Created,
    Updated,
    /// The user already was exactly as sent; nothing was written.
    Unchanged,
    Skipped,
    Failed,
    /// A revert removed the user its job had created.
    Deleted,
}

/// A named value of a user. With a `null` value in an import, the user does not have it.
#[derive(InputObject)]
pub struct AttributeInput {
    pub name: String,
    pub value: Option<String>,
    #[graphql(default_with = "AttributeType::String")]
    pub r#type: AttributeType,
    /// Groups attributes, as seed 004's attribute classes do.
    pub class: Option<String>,
}

impl From<AttributeInput> for RawAttribute {
    fn from(attribute: AttributeInput) -> Self {
        Self {
            name: attribute.name,
            value: attribute.value,
            kind: attribute.r#type.into(),
            class: attribute.class,
        }
    }
}

/// One person as an HR system sends it. Omitted optional fields keep their stored value
/// (unless `replace`), an explicit `null` clears one.
#[derive(InputObject)]
pub struct UserImportInput {
    /// The id in the sending system; with `source`, identifies the user in the tenant.
    pub external_id: String,
    /// Namespaces external ids of different systems; `default` when omitted.
    pub source: Option<String>,
    /// Unique per tenant, compared case-insensitively.
    pub email: String,
    /// Unique per tenant, case-insensitively; defaults to the email.
    pub login: MaybeUndefined<String>,
    pub first_name: String,
    pub middle_name: MaybeUndefined<String>,
    pub last_name: String,
    pub title: MaybeUndefined<String>,
    /// At least 8 characters; stored as an Argon2id hash, never returned. `replace` never
    /// clears it; send `null` to remove it.
    pub password: MaybeUndefined<String>,
    /// An already hashed password: a PHC string of argon2id, or a bcrypt hash.
    pub password_hash: MaybeUndefined<String>,
    /// Not in the future.
    pub birth_date: MaybeUndefined<Date>,
    pub gender: MaybeUndefined<Gender>,
    /// Defaults to true for a new user; `null` sets it back to true.
    pub active: MaybeUndefined<bool>,
    /// E.164, e.g. `+380971234567`; spaces, dashes and brackets are dropped.
    pub phone: MaybeUndefined<String>,
    pub city: MaybeUndefined<String>,
    pub department: MaybeUndefined<String>,
    pub position: MaybeUndefined<String>,
    pub company: MaybeUndefined<String>,
    pub work_contact: MaybeUndefined<String>,
    /// Code of the user's unit in the organisational structure.
    pub structure_uid: MaybeUndefined<String>,
    pub language: MaybeUndefined<Language>,
    pub facebook_id: MaybeUndefined<String>,
    pub google_id: MaybeUndefined<String>,
    pub employment_start_date: MaybeUndefined<Date>,
    /// Not before `employmentStartDate`.
    pub employment_end_date: MaybeUndefined<Date>,
    pub position_assigned_date: MaybeUndefined<Date>,
    /// Trimmed, lower-cased and de-duplicated; replaces the user's tags.
    pub tags: MaybeUndefined<Vec<String>>,
    /// Replaces the user's attributes.
    pub attributes: MaybeUndefined<Vec<AttributeInput>>,
    /// Any JSON, up to 64 KiB; kept for integrations, never shown to the user.
    pub custom_info: MaybeUndefined<Json<serde_json::Value>>,
    /// When sent, replaces the user's approver set (`null` or `[]` removes every approver),
    /// in the same transaction as the rest of the import.
    pub approvers: MaybeUndefined<Vec<ApproverInput>>,
    /// Shorthand for one `MANAGER` approver: the external id of a user of the same source.
    /// Alone, it replaces only the `MANAGER` link (`null` removes it); with `approvers`, it
    /// is added to that set.
    pub manager_external_id: MaybeUndefined<String>,
}

impl From<UserImportInput> for ImportRow {
    fn from(mut input: UserImportInput) -> Self {
        let links = RawLinks {
            approvers: patch(std::mem::take(&mut input.approvers), |approvers| {
                approvers.iter().map(RawApprover::from).collect()
            }),
            manager_external_id: patch(std::mem::take(&mut input.manager_external_id), same),
        };
        Self {
            user: input.into(),
            links,
        }
    }
}

fn patch<T, U>(value: MaybeUndefined<T>, convert: impl FnOnce(T) -> U) -> Patch<U> {
    match value {
        MaybeUndefined::Undefined => Patch::Keep,
        MaybeUndefined::Null => Patch::Clear,
        MaybeUndefined::Value(value) => Patch::Set(convert(value)),
    }
}

fn same<T>(value: T) -> T {
    value
}

fn date_text(date: Date) -> String {
    date.0
}

impl From<UserImportInput> for RawUser {
    fn from(input: UserImportInput) -> Self {
        Self {
            external_id: input.external_id,
            source: input.source,
            email: input.email,
            login: patch(input.login, same),
            first_name: input.first_name,
            middle_name: patch(input.middle_name, same),
            last_name: input.last_name,
            title: patch(input.title, same),
            password: patch(input.password, same),
            password_hash: patch(input.password_hash, same),
            birth_date: patch(input.birth_date, date_text),
            gender: patch(input.gender, Into::into),
            active: patch(input.active, same),
            phone: patch(input.phone, same),
            city: patch(input.city, same),
            department: patch(input.department, same),
            position: patch(input.position, same),
            company: patch(input.company, same),
            work_contact: patch(input.work_contact, same),
            structure_uid: patch(input.structure_uid, same),
            language: patch(input.language, Into::into),
            facebook_id: patch(input.facebook_id, same),
            google_id: patch(input.google_id, same),
            employment_start_date: patch(input.employment_start_date, date_text),
            employment_end_date: patch(input.employment_end_date, date_text),
            position_assigned_date: patch(input.position_assigned_date, date_text),
            tags: patch(input.tags, same),
            attributes: patch(input.attributes, |attributes| {
                attributes.into_iter().map(RawAttribute::from).collect()
            }),
            custom_info: patch(input.custom_info, |json| json.0),
        }
    }
}

/// How an import treats each user, and, for bulk jobs, the job.
#[derive(InputObject)]
pub struct ImportOptions {
    #[graphql(default_with = "ImportMode::Upsert")]
    pub mode: ImportMode,
    #[graphql(default_with = "MatchBy::ExternalId")]
    pub match_by: MatchBy,
    /// True: every omitted optional field is cleared (a full override). The password is kept.
    #[graphql(default)]
    pub replace: bool,
    /// Check and decide everything, report the action, write nothing.
    #[graphql(default)]
    pub dry_run: bool,
    /// Bulk jobs: all rows or none; one failed row fails the job and nothing is written.
    /// `importUser` is always all-or-nothing.
    #[graphql(default)]
    pub atomic: bool,
    /// Bulk jobs: the same key in the same tenant returns the first job (whatever its
    /// status) instead of starting a second one; the same key with a different request is
    /// a `CONFLICT`. Keys are kept as long as their job. Up to 255 characters.
    pub idempotency_key: Option<String>,
    /// Bulk jobs: at the end, list in `integrityWarnings` every approver link of the tenant
    /// whose approver is inactive.
    #[graphql(default = true)]
    pub run_integrity_check: bool,
    /// Bulk jobs: a note kept with the job, up to 1000 characters.
    pub description: Option<String>,
    /// Bulk jobs, sync mode: at the end, the active users of the job's sources (the
    /// `source` of its rows) that no row names become inactive (`summary.deactivated`,
    /// `deactivatedUsers`). Not with `atomic`; a retry never deactivates.
    #[graphql(default)]
    pub deactivate_missing: bool,
    /// Bulk jobs, sync mode: a percentage (0–100). When more than this share of a source's
    /// active users would be deactivated, nobody is, and the job ends
    /// `COMPLETED_WITH_ERRORS` with the reason in `errorMessage`.
    pub change_threshold: Option<i32>,
}

/// The options an import without `options` gets: the defaults above.
impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            mode: ImportMode::Upsert,
            match_by: MatchBy::ExternalId,
            replace: false,
            dry_run: false,
            atomic: false,
            idempotency_key: None,
            run_integrity_check: true,
            description: None,
            deactivate_missing: false,
            change_threshold: None,
        }
    }
}

impl ImportOptions {
    /// The options of `importUser`, which runs no job: the job-only options that would mean
    /// something else there are refused rather than ignored.
    pub fn single(self) -> AppResult<UserImportOptions> {
        let mut problems = Vec::new();
        for (set, field) in [
            (self.idempotency_key.is_some(), "idempotencyKey"),
            (self.description.is_some(), "description"),
            (self.deactivate_missing, "deactivateMissing"),
            (self.change_threshold.is_some(), "changeThreshold"),
        ] {
            if set {
                problems.push(FieldError::new(
                    format!("options.{field}"),
                    "NOT_SUPPORTED",
                    "only bulk jobs (importUsers) take this option",
                ));
            }
        }
        if problems.is_empty() {
            Ok(self.user())
        } else {
            Err(AppError::invalid_fields(problems))
        }
    }

    pub fn user(&self) -> UserImportOptions {
        UserImportOptions {
            mode: self.mode.into(),
            match_by: self.match_by.into(),
            replace: self.replace,
            dry_run: self.dry_run,
        }
    }
}

/// One user, by exactly one of `id`, `externalId` (with `source`, default `default`) or
/// `email` (case-insensitive).
#[derive(InputObject)]
pub struct UserLookup {
    pub id: Option<ID>,
    pub external_id: Option<String>,
    pub source: Option<String>,
    pub email: Option<String>,
}

impl UserLookup {
    pub fn key(&self, path: &str) -> AppResult<UserKey> {
        RawLookup::from(self).key(path)
    }
}

impl From<&UserLookup> for RawLookup {
    fn from(lookup: &UserLookup) -> Self {
        Self {
            id: lookup.id.as_ref().map(|id| id.to_string()),
            external_id: lookup.external_id.clone(),
            source: lookup.source.clone(),
            email: lookup.email.clone(),
        }
    }
}

/// Narrows `users`; every filter given must hold.
#[derive(InputObject, Default)]
pub struct UserFilter {
    /// Each word must occur (case-insensitively) in the first or last name, the email, the
    /// login or the external id.
    pub search: Option<String>,
    pub active: Option<bool>,
    /// Users with this tag (compared lower-cased).
    pub tag: Option<String>,
    /// Users of exactly this department.
    pub department: Option<String>,
    pub source: Option<String>,
    /// Users whose overall learning-track status is this one now (or at `asOf`).
    pub learning_track_status: Option<LearningTrackStatus>,
    /// The moment `learningTrackStatus` is judged at (default now), as `complianceSummary`'s
    /// `asOf`: the users it counts under a status are the users this lists.
    pub as_of: Option<DateTime<Utc>>,
}

impl UserFilter {
    /// The domain filter; a status filter is judged at `asOf`, else at `now`.
    fn into_domain(
        self,
        now: DateTime<Utc>,
        backend: sea_orm::DatabaseBackend,
        tenant: &TenantId,
    ) -> DomainFilter {
        let at = self.as_of.unwrap_or(now).timestamp_millis();
        DomainFilter {
            search: self.search,
            active: self.active,
            tag: self.tag,
            department: self.department,
            source: self.source,
            within: self
                .learning_track_status
                .map(|status| crate::tracks::status_condition(backend, tenant, status.into(), at)),
        }
    }
}

/// A named value of a user.
#[derive(SimpleObject)]
pub struct Attribute {
    pub name: String,
    /// In the canonical form of its type (dates as `YYYY-MM-DD`).
    pub value: Option<String>,
    pub r#type: AttributeType,
    pub class: Option<String>,
}

impl From<profile::Attribute> for Attribute {
    fn from(attribute: profile::Attribute) -> Self {
        Self {
            name: attribute.name,
            value: Some(attribute.value),
            r#type: attribute.kind.into(),
            class: attribute.class,
        }
    }
}

/// A person of the caller's tenant, with its approver links when the page that holds it
/// fetched them for all its users at once.
pub struct User(pub users::Model, Prefetched);

/// Relations loaded ahead for a whole page; `None` means "ask the loader".
#[derive(Default)]
struct Prefetched {
    tags: Option<Vec<String>>,
    attributes: Option<Vec<profile::Attribute>>,
    approvers: Option<Vec<ResolvedLink>>,
    managees: Option<Vec<ResolvedLink>>,
    /// Learning-track progress for the `asOf` the query gave (`None`: the request's now).
    progress: Option<(Option<DateTime<Utc>>, Vec<tracks::Progress>)>,
}

impl Prefetched {
    fn progress_for(&self, as_of: Option<DateTime<Utc>>) -> Option<Vec<tracks::Progress>> {
        self.progress
            .as_ref()
            .filter(|(at, _)| *at == as_of)
            .map(|(_, progress)| progress.clone())
    }
}

impl From<users::Model> for User {
    fn from(user: users::Model) -> Self {
        Self(user, Prefetched::default())
    }
}

async fn links(
    prefetched: &Option<Vec<ResolvedLink>>,
    load: impl Future<Output = Result<Option<Vec<ResolvedLink>>, AppError>>,
) -> AppResult<Vec<ApproverLink>> {
    let links = match prefetched {
        Some(links) => links.clone(),
        None => load.await?.unwrap_or_default(),
    };
    Ok(links.into_iter().map(ApproverLink).collect())
}

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn external_id(&self) -> &str {
        &self.0.external_id
    }
    async fn source(&self) -> &str {
        &self.0.source
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn login(&self) -> &str {
        &self.0.login
    }
    async fn first_name(&self) -> &str {
        &self.0.first_name
    }
    async fn middle_name(&self) -> Option<&str> {
        self.0.middle_name.as_deref()
    }
    async fn last_name(&self) -> &str {
        &self.0.last_name
    }
    /// First, middle and last name, separated by spaces.
    async fn full_name(&self) -> String {
        [
            Some(self.0.first_name.as_str()),
            self.0.middle_name.as_deref(),
            Some(self.0.last_name.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
    }
    async fn title(&self) -> Option<&str> {
        self.0.title.as_deref()
    }
    async fn birth_date(&self) -> Option<Date> {
        self.0.birth_date.map(Date::from)
    }
    async fn gender(&self) -> Option<Gender> {
        self.0
            .gender
            .as_deref()
            .and_then(profile::Gender::from_stored)
            .map(Into::into)
    }
    async fn active(&self) -> bool {
        self.0.active
    }
    async fn phone(&self) -> Option<&str> {
        self.0.phone.as_deref()
    }
    async fn city(&self) -> Option<&str> {
        self.0.city.as_deref()
    }
    async fn department(&self) -> Option<&str> {
        self.0.department.as_deref()
    }
    async fn position(&self) -> Option<&str> {
        self.0.position.as_deref()
    }
    async fn company(&self) -> Option<&str> {
        self.0.company.as_deref()
    }
    async fn work_contact(&self) -> Option<&str> {
        self.0.work_contact.as_deref()
    }
    async fn structure_uid(&self) -> Option<&str> {
        self.0.structure_uid.as_deref()
    }
    async fn language(&self) -> Option<Language> {
        self.0
            .language
            .as_deref()
            .and_then(profile::Language::from_stored)
            .map(Into::into)
    }
    async fn facebook_id(&self) -> Option<&str> {
        self.0.facebook_id.as_deref()
    }
    async fn google_id(&self) -> Option<&str> {
        self.0.google_id.as_deref()
    }
    async fn employment_start_date(&self) -> Option<Date> {
        self.0.employment_start_date.map(Date::from)
    }
    async fn employment_end_date(&self) -> Option<Date> {
        self.0.employment_end_date.map(Date::from)
    }
    async fn position_assigned_date(&self) -> Option<Date> {
        self.0.position_assigned_date.map(Date::from)
    }
    /// Lower-cased, sorted (at most 200).
    #[graphql(complexity = "cost::list(cost::TAGS, child_complexity)")]
    async fn tags(&self, ctx: &Context<'_>) -> AppResult<Vec<String>> {
        if let Some(tags) = &self.1.tags {
            return Ok(tags.clone());
        }
        let loader = ctx.data_unchecked::<DataLoader<TagsLoader>>();
        Ok(loader.load_one(self.0.id).await?.unwrap_or_default())
    }
    /// Sorted by name (at most 200).
    #[graphql(complexity = "cost::list(cost::ATTRIBUTES, child_complexity)")]
    async fn attributes(&self, ctx: &Context<'_>) -> AppResult<Vec<Attribute>> {
        let attributes = match &self.1.attributes {
            Some(attributes) => attributes.clone(),
            None => {
                let loader = ctx.data_unchecked::<DataLoader<AttributesLoader>>();
                loader.load_one(self.0.id).await?.unwrap_or_default()
            }
        };
        Ok(attributes.into_iter().map(Attribute::from).collect())
    }
    /// Who approves for this user.
    #[graphql(complexity = "cost::list(cost::APPROVERS, child_complexity)")]
    async fn approvers(&self, ctx: &Context<'_>) -> AppResult<Vec<ApproverLink>> {
        let loader = ctx.data_unchecked::<DataLoader<ApproversLoader>>();
        links(&self.1.approvers, loader.load_one(self.0.id)).await
    }
    /// Whom this user approves for (or, as `NON_APPROVING_MANAGER`, sees): the first
    /// `first` of them (default 100, at most 500) in order of the managed user's id. A
    /// manager of more is best listed from `users` with a page per request.
    #[graphql(complexity = "cost::page(first, MANAGEES_PAGE, child_complexity)")]
    async fn managees(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] first: Option<i32>,
    ) -> AppResult<Vec<ApproverLink>> {
        let page = PageArgs::check(first, MANAGEES_PAGE, MAX_PAGE, None)?;
        let loader = ctx.data_unchecked::<DataLoader<ManageesLoader>>();
        let mut links = links(&self.1.managees, loader.load_one(self.0.id)).await?;
        page.trim(&mut links);
        Ok(links)
    }
    /// Overall compliance as of `asOf` (default now).
    async fn learning_track_status(
        &self,
        ctx: &Context<'_>,
        as_of: Option<DateTime<Utc>>,
    ) -> AppResult<LearningTrackStatus> {
        let progress = match self.1.progress_for(as_of) {
            Some(progress) => progress,
            None => tracks::graphql::progress(ctx, self.0.id, as_of).await?,
        };
        Ok(tracks::overall(&progress).into())
    }
    /// Each assigned track with its status as of `asOf` (default now), by track name.
    #[graphql(complexity = "cost::list(cost::LEARNING_TRACKS, child_complexity)")]
    async fn learning_tracks(
        &self,
        ctx: &Context<'_>,
        as_of: Option<DateTime<Utc>>,
    ) -> AppResult<Vec<TrackProgress>> {
        let progress = match self.1.progress_for(as_of) {
            Some(progress) => progress,
            None => tracks::graphql::progress(ctx, self.0.id, as_of).await?,
        };
        Ok(progress.into_iter().map(TrackProgress::from).collect())
    }
    async fn custom_info(&self) -> Option<Json<serde_json::Value>> {
        self.0.custom_info.clone().map(Json)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When an import last changed the user; an `UNCHANGED` import leaves it.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// Tags of many users in one query per request level.
pub struct TagsLoader {
    pub db: DatabaseConnection,
    pub tenant: TenantId,
}

impl Loader<i64> for TagsLoader {
    type Value = Vec<String>;
    type Error = AppError;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<String>>, AppError> {
        Ok(store::tags_of(&self.db, &self.tenant, ids).await?)
    }
}

/// Attributes of many users in one query per request level.
pub struct AttributesLoader {
    pub db: DatabaseConnection,
    pub tenant: TenantId,
}

impl Loader<i64> for AttributesLoader {
    type Value = Vec<profile::Attribute>;
    type Error = AppError;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, Self::Value>, AppError> {
        Ok(store::attributes_of(&self.db, &self.tenant, ids).await?)
    }
}

/// The loaders of one request, bound to its tenant.
pub fn loaders(data: &mut async_graphql::Data, db: &DatabaseConnection, tenant: &TenantId) {
    data.insert(DataLoader::new(
        TagsLoader {
            db: db.clone(),
            tenant: tenant.clone(),
        },
        tokio::spawn,
    ));
    data.insert(DataLoader::new(
        AttributesLoader {
            db: db.clone(),
            tenant: tenant.clone(),
        },
        tokio::spawn,
    ));
}

/// What `importUser` did (in a dry run: would do), counted as seed 001 counts.
#[derive(SimpleObject)]
pub struct ImportUserPayload {
    pub action: RowAction,
    /// The user as stored; in a dry run, as it is now (`null` when it would be created).
    pub user: Option<User>,
    pub created: i32,
    pub updated: i32,
    /// 1 when `active` went from true to false.
    pub blocked: i32,
    /// 1 when `active` went from false to true.
    pub unblocked: i32,
    pub warnings: Vec<String>,
}

/// `totalCount` of a `users` page: counted only when asked for.
pub struct UserTotal {
    tenant: TenantId,
    filter: DomainFilter,
}

#[Object]
impl UserTotal {
    /// Users matching the filter, on all pages.
    async fn total_count(&self, ctx: &Context<'_>) -> AppResult<i64> {
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let count = store::count(db, &self.tenant, &self.filter).await?;
        Ok(i64::try_from(count).unwrap_or(i64::MAX))
    }
}

pub type UserConnection = Connection<IdCursor, User, UserTotal>;

#[derive(Default)]
pub struct UsersQuery;

#[Object]
impl UsersQuery {
    /// One user of the caller's tenant, or `null`.
    async fn user(&self, ctx: &Context<'_>, lookup: UserLookup) -> AppResult<Option<User>> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let key = lookup.key("lookup")?;
        Ok(store::find(db, &principal.tenant, &key)
            .await?
            .map(User::from))
    }

    /// Users of the caller's tenant in the order they were created, `first` at a time
    /// (default 50, at most 500).
    #[graphql(complexity = "cost::page(first, DEFAULT_PAGE, child_complexity)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
        filter: Option<UserFilter>,
    ) -> AppResult<UserConnection> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let page = PageArgs::check(first, DEFAULT_PAGE, MAX_PAGE, after)?;
        let filter = filter.unwrap_or_default().into_domain(
            request_now(ctx),
            db.get_database_backend(),
            &principal.tenant,
        );
        filter.check()?;
        let mut rows =
            store::page(db, &principal.tenant, &filter, page.after, page.limit + 1).await?;
        let has_next = page.trim(&mut rows);
        let mut connection = Connection::with_additional_fields(
            page.after.is_some(),
            has_next,
            UserTotal {
                tenant: principal.tenant.clone(),
                filter,
            },
        );
        let mut prefetched = prefetch(ctx, db, &principal.tenant, &rows).await?;
        connection.edges.extend(rows.into_iter().map(|user| {
            let prefetched = prefetched.remove(&user.id).unwrap_or_default();
            Edge::new(IdCursor(user.id), User(user, prefetched))
        }));
        Ok(connection)
    }
}

/// The related rows a page's query selects, for all its users at once: a fixed number of
/// statements whatever the page size, where loaders batch only as far as their calls happen
/// to arrive together.
async fn prefetch(
    ctx: &Context<'_>,
    db: &DatabaseConnection,
    tenant: &TenantId,
    rows: &[users::Model],
) -> AppResult<HashMap<i64, Prefetched>> {
    let look_ahead = ctx.look_ahead();
    let node = [
        look_ahead.field("edges").field("node"),
        look_ahead.field("nodes"),
    ];
    let wants = |field: &str| !rows.is_empty() && node.iter().any(|n| n.field(field).exists());
    let ids: Vec<i64> = rows.iter().map(|u| u.id).collect();
    let mut pages: HashMap<i64, Prefetched> =
        ids.iter().map(|id| (*id, Prefetched::default())).collect();
    if wants("tags") {
        let mut tags = store::tags_of(db, tenant, &ids).await?;
        for (id, page) in &mut pages {
            page.tags = Some(tags.remove(id).unwrap_or_default());
        }
    }
    if wants("attributes") {
        let mut attributes = store::attributes_of(db, tenant, &ids).await?;
        for (id, page) in &mut pages {
            page.attributes = Some(attributes.remove(id).unwrap_or_default());
        }
    }
    if wants("approvers") {
        let mut links = approver_store::resolved_links_by(db, tenant, Side::User, &ids).await?;
        for (id, page) in &mut pages {
            page.approvers = Some(links.remove(id).unwrap_or_default());
        }
    }
    if !rows.is_empty()
        && let Some(as_of) = one_as_of(&node)
    {
        let at = as_of.unwrap_or_else(|| request_now(ctx)).timestamp_millis();
        let mut progress = tracks::progress_of(db, tenant, &ids, at).await?;
        for (id, page) in &mut pages {
            page.progress = Some((as_of, progress.remove(id).unwrap_or_default()));
        }
    }
    if wants("managees") {
        let mut links = approver_store::resolved_links_by(db, tenant, Side::Approver, &ids).await?;
        for (id, page) in &mut pages {
            page.managees = Some(links.remove(id).unwrap_or_default());
        }
    }
    Ok(pages)
}

/// The one `asOf` every selection of `learningTrackStatus`/`learningTracks` on the page's
/// users gives (`Some(None)`: none given, so now); `None` when they are not selected, or
/// ask for different instants (then each is loaded on its own).
fn one_as_of(nodes: &[async_graphql::Lookahead<'_>]) -> Option<Option<DateTime<Utc>>> {
    let mut instants = Vec::new();
    for node in nodes {
        for name in ["learningTrackStatus", "learningTracks"] {
            for field in node.field(name).selection_fields() {
                let arguments = field.arguments().ok()?;
                let as_of = match arguments.iter().find(|(name, _)| name.as_str() == "asOf") {
                    None | Some((_, async_graphql::Value::Null)) => None,
                    Some((_, async_graphql::Value::String(text))) => {
                        Some(DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc))
                    }
                    Some(_) => return None,
                };
                instants.push(as_of);
            }
        }
    }
    let first = *instants.first()?;
    instants.iter().all(|at| *at == first).then_some(first)
}

#[derive(Default)]
pub struct UsersMutation;

#[Object]
impl UsersMutation {
    /// Creates or updates one user, synchronously and all-or-nothing: any bad field or clash
    /// writes nothing and names every offending field.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn import_user(
        &self,
        ctx: &Context<'_>,
        user: UserImportInput,
        options: Option<ImportOptions>,
    ) -> AppResult<ImportUserPayload> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let options = options.unwrap_or_default().single()?;
        let outcome =
            import::import_user(db, &principal.tenant, ImportRow::from(user), &options).await?;
        let count = |yes: bool| i32::from(yes);
        Ok(ImportUserPayload {
            action: outcome.action.into(),
            user: outcome.user.map(User::from),
            created: count(outcome.action == import::RowAction::Created),
            updated: count(outcome.action == import::RowAction::Updated),
            blocked: count(outcome.blocked),
            unblocked: count(outcome.unblocked),
            warnings: outcome.warnings,
        })
    }
}
