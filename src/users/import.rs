//! Importing one user: find, decide, write — all or nothing.
//!
//! [`decide`] is the whole decision (which user is meant, what it becomes, which action
//! that is, what clashes) and writes nothing; [`import_user`] runs it in one write
//! transaction and applies it. Bulk imports use the very same [`decide`].

use std::collections::HashSet;

use chrono::{DateTime, NaiveDate, Utc};
use entity::users;
use sea_orm::sea_query::LockType;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde::{Deserialize, Serialize};

use super::lookup::UserKey;
use super::profile::{PreparedPassword, Profile, RawUser, UserChanges};
use super::store;
use crate::approvers::store::{self as approver_store, Side};
use crate::approvers::{self, ApproverChange, ApproverSpec, Label, Link, RawLinks, Snapshot};
use crate::auth::TenantId;
use crate::db;
use crate::error::{AppError, AppResult, FieldError};
use crate::tracks;
use crate::validate::escaped;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportMode {
    CreateOnly,
    UpdateOnly,
    #[default]
    Upsert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatchBy {
    /// The user with the same `(source, externalId)`.
    #[default]
    ExternalId,
    /// The user with the same email (case-insensitive), else the same `(source, externalId)`;
    /// a user matched by email takes the sent `(source, externalId)`.
    Email,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowAction {
    Created,
    Updated,
    Unchanged,
    Skipped,
    Failed,
    /// A revert removed the user its job created.
    Deleted,
}

impl RowAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Updated => "UPDATED",
            Self::Unchanged => "UNCHANGED",
            Self::Skipped => "SKIPPED",
            Self::Failed => "FAILED",
            Self::Deleted => "DELETED",
        }
    }

    pub fn from_stored(text: &str) -> Self {
        [
            Self::Created,
            Self::Updated,
            Self::Unchanged,
            Self::Skipped,
            Self::Failed,
            Self::Deleted,
        ]
        .into_iter()
        .find(|action| action.as_str() == text)
        .unwrap_or(Self::Failed)
    }
}

/// One user of an import as sent: its fields and what it says about its approvers. Its
/// serde form is the API's `UserImportInput` object, which is how a bulk job keeps its rows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportRow {
    #[serde(flatten)]
    pub user: RawUser,
    #[serde(flatten)]
    pub links: RawLinks,
}

impl ImportRow {
    /// The source the row names, or the default one.
    fn source(&self) -> &str {
        self.user
            .source
            .as_deref()
            .unwrap_or(super::profile::DEFAULT_SOURCE)
    }

    /// `source:externalId`, as the row names its user before any checking (its control
    /// characters escaped, so that a refused row's key is still stored with its result).
    pub fn lookup_key(&self) -> String {
        escaped(&format!("{}:{}", self.source(), self.user.external_id))
    }

    /// `(source, externalId)` the row names, as its import keys the user.
    pub fn user_key(&self) -> (String, String) {
        (
            self.source().trim().to_owned(),
            self.user.external_id.trim().to_owned(),
        )
    }

    /// Checks every field, the approvers' lookups included; all problems are reported
    /// together, each under `{prefix}.{field}`.
    pub fn parse(self, prefix: &str) -> AppResult<(UserChanges, ApproverChange)> {
        let links = self.links.change(self.user.source.as_deref(), prefix);
        let user = UserChanges::parse(self.user, prefix);
        match (user, links) {
            (Ok(user), Ok(links)) => Ok((user, links)),
            (Err(mut problems), Err(AppError::BadUserInput { field_errors, .. })) => {
                problems.extend(field_errors);
                Err(AppError::invalid_fields(problems))
            }
            (Err(problems), _) => Err(AppError::invalid_fields(problems)),
            (Ok(_), Err(error)) => Err(error),
        }
    }
}

/// The options of `ImportOptions` that apply to each user.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserImportOptions {
    pub mode: ImportMode,
    pub match_by: MatchBy,
    /// Omitted optional fields are cleared.
    pub replace: bool,
    /// Decide and report, write nothing.
    pub dry_run: bool,
}

/// What importing one user did (or, in a dry run, would do).
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    pub action: RowAction,
    /// The user as stored afterwards; in a dry run, as it is now (`None` if it would be new).
    pub user: Option<users::Model>,
    /// `active` went from true to false.
    pub blocked: bool,
    /// `active` went from false to true.
    pub unblocked: bool,
    pub warnings: Vec<String>,
}

/// The decision for one user, made before anything is written.
#[derive(Debug)]
pub enum Decision {
    Create(Profile),
    Update {
        user: users::Model,
        before: Box<Profile>,
        after: Box<Profile>,
    },
    Unchanged(users::Model),
    /// The mode rules the user out: `CREATE_ONLY` and it exists, or `UPDATE_ONLY` and it
    /// does not. `importUser` answers with the error; a bulk job skips the row.
    Skip(AppError),
}

impl Decision {
    /// The stored user this decision is about; `None` for a new one.
    pub fn user_id(&self) -> Option<i64> {
        match self {
            Self::Create(_) | Self::Skip(_) => None,
            Self::Update { user, .. } | Self::Unchanged(user) => Some(user.id),
        }
    }
}

/// Decides what importing `changes` means for the stored users of `tenant`.
pub async fn decide(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    changes: &UserChanges,
    options: &UserImportOptions,
    today: NaiveDate,
) -> AppResult<Decision> {
    decide_for(conn, tenant, changes, options, None, today).await
}

/// A stored user an import is about, named by its id (as a SCIM resource is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub id: i64,
    /// The `updatedAt` (in microseconds) the writer read the user at: when set and the user
    /// changed since, nothing is written and the answer is a [`VERSION_CHANGED`] conflict.
    pub read_at: Option<i64>,
}

/// The code of the conflict a [`Target`] whose user changed since it was read gets.
pub const VERSION_CHANGED: &str = "VERSION_CHANGED";

/// [`decide`], or with `target`, the decision for that stored user (which takes the sent
/// `(source, externalId)`, as a user matched by email does). A `target` not in the tenant
/// is not found.
async fn decide_for(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    changes: &UserChanges,
    options: &UserImportOptions,
    target: Option<Target>,
    today: NaiveDate,
) -> AppResult<Decision> {
    if let Some(Target { id, read_at }) = target {
        let Some(user) = store::find_for_update(conn, tenant, &UserKey::Id(id)).await? else {
            return Err(AppError::NotFound(format!("no user {id}")));
        };
        // Checked under the row's lock: nobody writes the user between this and the write.
        if read_at.is_some_and(|read_at| read_at != user.updated_at.timestamp_micros()) {
            return Err(AppError::conflict(vec![FieldError::new(
                "version",
                VERSION_CHANGED,
                format!("user {id} changed since it was read"),
            )]));
        }
        let before = store::profile_of(conn, tenant, &user).await?;
        return match judge(changes, options, Some(user), true, Some(before), today)? {
            Judged::Done(decision) => Ok(*decision),
            Judged::Write { existing, after } => {
                let holders = store::holders_of(conn, tenant, &after, Some(id)).await?;
                finish(changes, existing, after, &holders)
            }
        };
    }
    // The matched row stays locked (on PostgreSQL) until the transaction ends, so two
    // imports of one user take turns; SQLite's write transaction already serialises them.
    let by_email = match options.match_by {
        MatchBy::Email => {
            store::find_for_update(conn, tenant, &UserKey::Email(changes.email.normalized()))
                .await?
        }
        MatchBy::ExternalId => None,
    };
    let matched_by_email = by_email.is_some();
    let existing = match by_email {
        Some(user) => Some(user),
        None => store::find_for_update(conn, tenant, &external_key(changes)).await?,
    };
    let before = match &existing {
        Some(user) => Some(store::profile_of(conn, tenant, user).await?),
        None => None,
    };
    match judge(changes, options, existing, matched_by_email, before, today)? {
        Judged::Done(decision) => Ok(*decision),
        Judged::Write { existing, after } => {
            let except = existing.as_ref().map(|existing| existing.0.id);
            let holders = store::holders_of(conn, tenant, &after, except).await?;
            finish(changes, existing, after, &holders)
        }
    }
}

fn external_key(changes: &UserChanges) -> UserKey {
    UserKey::External {
        source: changes.source.clone(),
        external_id: changes.external_id.clone(),
    }
}

/// A decision before its unique values are checked against other users.
enum Judged {
    Done(Box<Decision>),
    Write {
        existing: Option<Box<(users::Model, Profile)>>,
        after: Box<Profile>,
    },
}

/// The rules of a decision that need nothing more from the store than the matched user.
fn judge(
    changes: &UserChanges,
    options: &UserImportOptions,
    existing: Option<users::Model>,
    matched_by_email: bool,
    before: Option<Profile>,
    today: NaiveDate,
) -> AppResult<Judged> {
    match (options.mode, &existing) {
        (ImportMode::CreateOnly, Some(_)) => {
            let (field, what) = if matched_by_email {
                ("email", "this email")
            } else {
                ("externalId", "this source and externalId")
            };
            return Ok(Judged::Done(Box::new(Decision::Skip(AppError::conflict(
                vec![FieldError::new(
                    changes.path(field),
                    "EXISTS",
                    format!("a user with {what} already exists, and mode is CREATE_ONLY"),
                )],
            )))));
        }
        (ImportMode::UpdateOnly, None) => {
            return Ok(Judged::Done(Box::new(Decision::Skip(AppError::NotFound(
                format!(
                    "no user with externalId {:?} in source {:?}{}, and mode is UPDATE_ONLY",
                    changes.external_id,
                    changes.source,
                    match options.match_by {
                        MatchBy::Email => format!(" nor with email {:?}", changes.email.as_str()),
                        MatchBy::ExternalId => String::new(),
                    }
                ),
            )))));
        }
        _ => {}
    }
    let after = changes
        .apply(before.as_ref(), options.replace, today)
        .map_err(AppError::invalid_fields)?;
    Ok(match (existing, before) {
        (Some(user), Some(before)) if before == after => {
            Judged::Done(Box::new(Decision::Unchanged(user)))
        }
        (Some(user), Some(before)) => Judged::Write {
            existing: Some(Box::new((user, before))),
            after: Box::new(after),
        },
        _ => Judged::Write {
            existing: None,
            after: Box::new(after),
        },
    })
}

/// A create or update, unless another user (among `holders`) holds one of its unique values.
fn finish(
    changes: &UserChanges,
    existing: Option<Box<(users::Model, Profile)>>,
    after: Box<Profile>,
    holders: &[users::Model],
) -> AppResult<Decision> {
    let except = existing.as_ref().map(|existing| existing.0.id);
    let others: Vec<users::Model> = holders
        .iter()
        .filter(|o| Some(o.id) != except)
        .cloned()
        .collect();
    let clashes = clashes(&others, &after, |field| changes.path(field));
    if !clashes.is_empty() {
        return Err(AppError::conflict(clashes));
    }
    Ok(match existing.map(|existing| *existing) {
        Some((user, before)) => Decision::Update {
            user,
            before: Box::new(before),
            after,
        },
        None => Decision::Create(*after),
    })
}

/// Decides many rows with a fixed number of statements: the longest prefix of `rows` in
/// which no row touches a user or a unique value (key, email, login) that an earlier row
/// of the prefix touches. Within such a prefix, deciding every row against the stored state
/// is the same as deciding them one after another, so each gets exactly the decision
/// [`decide`] would give it. The caller writes the prefix and calls again with the rest;
/// the result is never empty for a non-empty `rows`.
///
/// `absent` holds keys the caller found to name no user earlier in this transaction, and
/// that no row it wrote since can have taken: they are not looked for again. Another
/// transaction may give one to a user meanwhile, as it may after any lookup: a row that
/// creates it then fails on the unique key, and the caller runs its rows again one by one.
/// A row that can only update would be skipped instead, so `UPDATE_ONLY` looks again.
pub async fn decide_prefix(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    rows: &[&UserChanges],
    options: &UserImportOptions,
    today: NaiveDate,
    absent: &HashSet<UserKey>,
) -> Result<Vec<AppResult<Decision>>, DbErr> {
    let mut keys: Vec<UserKey> = rows.iter().map(|c| external_key(c)).collect();
    if options.match_by == MatchBy::Email {
        keys.extend(rows.iter().map(|c| UserKey::Email(c.email.normalized())));
    }
    let key_refs: Vec<&UserKey> = keys.iter().collect();
    let none = HashSet::new();
    let absent = match options.mode {
        ImportMode::UpdateOnly => &none,
        ImportMode::CreateOnly | ImportMode::Upsert => absent,
    };
    let unknown: Vec<&UserKey> = key_refs
        .iter()
        .copied()
        .filter(|key| !absent.contains(*key))
        .collect();
    let found = store::find_many(conn, tenant, &unknown, Some(LockType::Update)).await?;
    let mut ids: Vec<i64> = found.values().map(|u| u.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut tags = store::tags_of(conn, tenant, &ids).await?;
    let mut attributes = store::attributes_of(conn, tenant, &ids).await?;

    let mut claimed = Claimed::default();
    let mut judged = Vec::with_capacity(rows.len());
    for changes in rows {
        let by_email = match options.match_by {
            MatchBy::Email => found.get(&UserKey::Email(changes.email.normalized())),
            MatchBy::ExternalId => None,
        };
        let matched_by_email = by_email.is_some();
        let existing = by_email
            .or_else(|| found.get(&external_key(changes)))
            .cloned();
        if !claimed.take(changes, existing.as_ref()) {
            break;
        }
        let before = existing.as_ref().map(|user| {
            store::profile_from(
                user,
                tags.remove(&user.id).unwrap_or_default(),
                attributes.remove(&user.id).unwrap_or_default(),
            )
        });
        judged.push(judge(
            changes,
            options,
            existing,
            matched_by_email,
            before,
            today,
        ));
    }

    let writes: Vec<&Profile> = judged
        .iter()
        .filter_map(|j| match j {
            Ok(Judged::Write { after, .. }) => Some(after.as_ref()),
            _ => None,
        })
        .collect();
    let holders = store::holders_of_many(conn, tenant, &writes, Some((&key_refs, &found))).await?;
    Ok(judged
        .into_iter()
        .zip(rows)
        .map(|(judged, changes)| match judged? {
            Judged::Done(decision) => Ok(*decision),
            Judged::Write { existing, after } => {
                let holding: Vec<users::Model> = holders
                    .iter()
                    .filter(|o| {
                        o.email_key == after.email_key()
                            || o.login_key == after.login_key()
                            || (o.source == after.source && o.external_id == after.external_id)
                    })
                    .cloned()
                    .collect();
                finish(changes, existing, after, &holding)
            }
        })
        .collect())
}

/// The users and unique values the rows of a prefix touch, before and after.
#[derive(Default)]
struct Claimed {
    users: std::collections::HashSet<i64>,
    keys: std::collections::HashSet<(String, String)>,
    emails: std::collections::HashSet<String>,
    logins: std::collections::HashSet<String>,
}

impl Claimed {
    /// Claims what a row touches; false (claiming nothing) when an earlier row touches any.
    fn take(&mut self, changes: &UserChanges, existing: Option<&users::Model>) -> bool {
        let mut keys = vec![(changes.source.clone(), changes.external_id.clone())];
        let mut emails = vec![changes.email.normalized()];
        // The login may become the email, or the one sent.
        let mut logins = vec![changes.email.normalized()];
        logins.extend(changes.sent_login().map(str::to_lowercase));
        if let Some(user) = existing {
            keys.push((user.source.clone(), user.external_id.clone()));
            emails.push(user.email_key.clone());
            logins.push(user.login_key.clone());
        }
        let taken = existing.is_some_and(|u| self.users.contains(&u.id))
            || keys.iter().any(|k| self.keys.contains(k))
            || emails.iter().any(|e| self.emails.contains(e))
            || logins.iter().any(|l| self.logins.contains(l));
        if taken {
            return false;
        }
        self.users.extend(existing.map(|u| u.id));
        self.keys.extend(keys);
        self.emails.extend(emails);
        self.logins.extend(logins);
        true
    }
}

/// Each unique value of `profile` that one of `others` already holds, named by `path`.
pub fn clashes(
    others: &[users::Model],
    profile: &Profile,
    path: impl Fn(&str) -> String,
) -> Vec<FieldError> {
    let mut clashes = Vec::new();
    let email_key = profile.email_key();
    let login_key = profile.login_key();
    if others.iter().any(|o| o.email_key == email_key) {
        clashes.push(FieldError::new(
            path("email"),
            "TAKEN",
            format!("email {:?} is already used by another user", profile.email),
        ));
    }
    if others.iter().any(|o| o.login_key == login_key) {
        clashes.push(FieldError::new(
            path("login"),
            "TAKEN",
            format!("login {:?} is already used by another user", profile.login),
        ));
    }
    if others
        .iter()
        .any(|o| o.source == profile.source && o.external_id == profile.external_id)
    {
        clashes.push(FieldError::new(
            path("externalId"),
            "TAKEN",
            format!(
                "externalId {:?} in source {:?} belongs to another user",
                profile.external_id, profile.source
            ),
        ));
    }
    clashes
}

/// Writes a decision; returns the stored user (`None` for a skipped one).
pub async fn apply(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    decision: &Decision,
    now: DateTime<Utc>,
) -> Result<Option<users::Model>, DbErr> {
    let (user, retagged) = match decision {
        Decision::Create(profile) => store::insert(conn, tenant, profile, now).await?,
        Decision::Update {
            user,
            before,
            after,
        } => store::update(conn, tenant, user, before, after, now).await?,
        Decision::Unchanged(user) => return Ok(Some(user.clone())),
        Decision::Skip(_) => return Ok(None),
    };
    crate::tracks::follow(conn, tenant, retagged, now).await?;
    Ok(Some(user))
}

/// What a decision counts as: its action, and whether it blocks or unblocks the user.
pub fn counts(decision: &Decision, links_change: bool) -> (RowAction, bool, bool) {
    match decision {
        Decision::Create(_) => (RowAction::Created, false, false),
        Decision::Update { before, after, .. } => (
            RowAction::Updated,
            before.active && !after.active,
            !before.active && after.active,
        ),
        Decision::Unchanged(_) if links_change => (RowAction::Updated, false, false),
        Decision::Unchanged(_) => (RowAction::Unchanged, false, false),
        Decision::Skip(_) => (RowAction::Skipped, false, false),
    }
}

/// The approver set a decided user gets, checked; `None` when it stays as stored.
pub async fn decide_links(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user_id: Option<i64>,
    approvers: &ApproverChange,
    replace: bool,
) -> AppResult<Option<Vec<Link>>> {
    if !approvers.touches_links(replace) {
        return Ok(None);
    }
    let users: Vec<i64> = user_id.into_iter().collect();
    let snapshot = Snapshot::load(conn, tenant, &users, approvers.specs()).await?;
    plan_links(&snapshot, user_id, approvers, replace)
}

/// [`decide_links`] against a snapshot that holds the user's set and the change's
/// approvers; writes nothing.
pub fn plan_links(
    snapshot: &Snapshot,
    user_id: Option<i64>,
    approvers: &ApproverChange,
    replace: bool,
) -> AppResult<Option<Vec<Link>>> {
    if !approvers.touches_links(replace) {
        return Ok(None);
    }
    let current = user_id.map_or(&[][..], |id| snapshot.set(id));
    let (specs, paths, mut links): (Vec<ApproverSpec>, Vec<String>, Vec<Link>) = match approvers {
        ApproverChange::Keep if replace => (Vec::new(), Vec::new(), Vec::new()),
        ApproverChange::Keep => return Ok(None),
        ApproverChange::Replace(specs) => {
            let (specs, paths) = specs.iter().cloned().unzip();
            (specs, paths, Vec::new())
        }
        // Only the new manager is checked; the other stored links stay as they are.
        ApproverChange::SetManager(manager, path) => (
            manager.iter().cloned().collect(),
            vec![path.clone()],
            // `replace` overrides the whole set: only the manager is left.
            current
                .iter()
                .filter(|link| !replace && link.label != Label::Manager)
                .cloned()
                .collect(),
        ),
    };
    let is_manager_field = |path: &str| path.ends_with(".managerExternalId");
    links.extend(
        // A problem of `managerExternalId` is named by that field alone.
        snapshot
            .check(user_id, current, &specs, |i, field| {
                if is_manager_field(&paths[i]) {
                    paths[i].clone()
                } else {
                    format!("{}.{field}", paths[i])
                }
            })
            .map_err(AppError::invalid_fields)?
            .into_iter()
            .map(|mut link| {
                // `managerExternalId` names a person, not a permission: the same manager
                // keeps the `canApprove` stored for them.
                let same = current
                    .iter()
                    .find(|old| old.approver_id == link.approver_id && old.label == Label::Manager);
                if link.label == Label::Manager
                    && paths.iter().any(|p| is_manager_field(p))
                    && let Some(old) = same
                {
                    link.can_approve = old.can_approve;
                }
                link
            }),
    );
    approvers::sort_links(&mut links);
    Ok((links != current).then_some(links))
}

/// Warns when a user who approves for others is deactivated: their managees keep a link
/// to an inactive approver until someone else is set.
async fn managee_warning(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user: &users::Model,
) -> AppResult<Option<String>> {
    let links = approver_store::links_by(conn, tenant, Side::Approver, &[user.id])
        .await?
        .remove(&user.id)
        .unwrap_or_default();
    if links.is_empty() {
        return Ok(None);
    }
    let ids: Vec<i64> = links.iter().map(|l| l.user_id).collect();
    let mut managees: Vec<String> = store::by_ids(conn, tenant, &ids)
        .await?
        .into_values()
        .map(|u| u.external_id)
        .collect();
    managees.sort();
    managees.dedup();
    Ok(Some(format!(
        "{} is now inactive but still approves for {} user(s): {}",
        user.email,
        managees.len(),
        managees.join(", ")
    )))
}

/// `importUser`: parses, decides and writes one user, and its approvers, in one
/// transaction.
pub async fn import_user(
    db: &DatabaseConnection,
    tenant: &TenantId,
    row: ImportRow,
    options: &UserImportOptions,
) -> AppResult<ImportOutcome> {
    let (changes, approvers) = row.parse("user")?;
    import_parsed(db, tenant, changes, &approvers, None, options).await
}

/// [`import_user`] of changes already parsed (by another transport, such as SCIM); with
/// `target`, onto that stored user, found by id.
pub async fn import_parsed(
    db: &DatabaseConnection,
    tenant: &TenantId,
    mut changes: UserChanges,
    approvers: &ApproverChange,
    target: Option<Target>,
    options: &UserImportOptions,
) -> AppResult<ImportOutcome> {
    prepare_password(db, tenant, &mut changes).await?;
    // Two imports that both create the same new user race to insert it: the loser decides
    // again, now finding the winner's row.
    match import_once(db, tenant, &changes, approvers, target, options).await {
        Err(Attempt::LostRace(_)) => {
            match import_once(db, tenant, &changes, approvers, target, options).await {
                Ok(outcome) => Ok(outcome),
                Err(Attempt::LostRace(error)) => Err(write_error(error, &changes)),
                Err(Attempt::Failed(error)) => Err(error),
            }
        }
        Err(Attempt::Failed(error)) => Err(error),
        Ok(outcome) => Ok(outcome),
    }
}

/// Hashes a sent plain password, and checks it against the stored hashes of the users the
/// import may match, before any transaction: Argon2 is slow by design, and a transaction
/// (on SQLite, the database's one write lock) must not wait for it.
pub async fn prepare_password(
    db: &DatabaseConnection,
    tenant: &TenantId,
    changes: &mut UserChanges,
) -> AppResult<()> {
    let Some(password) = changes.plain_password().map(str::to_owned) else {
        return Ok(());
    };
    let keys = [
        UserKey::External {
            source: changes.source.clone(),
            external_id: changes.external_id.clone(),
        },
        UserKey::Email(changes.email.normalized()),
    ];
    let mut stored = Vec::new();
    for key in &keys {
        if let Some(hash) = store::find(db, tenant, key)
            .await?
            .and_then(|u| u.password_hash)
        {
            stored.push(hash);
        }
    }
    let path = changes.path("password");
    let prepared = tokio::task::spawn_blocking(move || PreparedPassword::new(&password, &stored))
        .await
        .map_err(AppError::internal)?
        .map_err(|problem| {
            AppError::invalid_fields(vec![FieldError::new(path, problem.code, problem.message)])
        })?;
    changes.prepare_password(prepared);
    Ok(())
}

enum Attempt {
    /// A unique value was taken between the decision and the write.
    LostRace(DbErr),
    Failed(AppError),
}

impl<E: Into<AppError>> From<E> for Attempt {
    fn from(error: E) -> Self {
        Self::Failed(error.into())
    }
}

fn written(error: DbErr) -> Attempt {
    if store::unique_violation_field(&error).is_some() {
        Attempt::LostRace(error)
    } else {
        Attempt::Failed(error.into())
    }
}

async fn import_once(
    db: &DatabaseConnection,
    tenant: &TenantId,
    changes: &UserChanges,
    approvers: &ApproverChange,
    target: Option<Target>,
    options: &UserImportOptions,
) -> Result<ImportOutcome, Attempt> {
    let now = Utc::now();
    let txn = db::begin_write(db).await?;
    // Approver changes take the tenant's approver lock before any row lock, in the same
    // order as setApprovers, so two writers never wait for each other.
    if approvers.touches_links(options.replace) {
        db::lock_tenant(&txn, approvers::LOCK_KIND, tenant).await?;
    }
    if changes.sends_tags() || options.replace {
        db::lock_tenant(&txn, tracks::TAGS_LOCK, tenant).await?;
    }
    let decision = decide_for(&txn, tenant, changes, options, target, now.date_naive()).await?;
    if let Decision::Skip(error) = decision {
        return Err(Attempt::Failed(error));
    }
    let links = decide_links(&txn, tenant, decision.user_id(), approvers, options.replace).await?;
    let (action, blocked, unblocked) = counts(&decision, links.is_some());
    let mut warnings = Vec::new();
    if blocked && let Decision::Update { user, .. } = &decision {
        warnings.extend(managee_warning(&txn, tenant, user).await?);
    }
    let user = if options.dry_run {
        txn.rollback().await?;
        match decision {
            Decision::Create(_) | Decision::Skip(_) => None,
            Decision::Update { user, .. } | Decision::Unchanged(user) => Some(user),
        }
    } else {
        let user = match apply(&txn, tenant, &decision, now).await {
            Ok(Some(user)) => write_links(&txn, tenant, user, links.as_deref(), now).await,
            Ok(None) => unreachable!("a skip returned above"),
            Err(error) => Err(error),
        }
        .map_err(written)?;
        txn.commit().await.map_err(written)?;
        Some(user)
    };
    if options.dry_run {
        warnings.push("dry run: nothing was written".to_owned());
    }
    Ok(ImportOutcome {
        action,
        user,
        blocked,
        unblocked,
        warnings,
    })
}

/// Writes a changed approver set; the user's `updatedAt` moves with it.
pub async fn write_links(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user: users::Model,
    links: Option<&[Link]>,
    now: DateTime<Utc>,
) -> Result<users::Model, DbErr> {
    let Some(links) = links else { return Ok(user) };
    approver_store::replace_set(conn, tenant, user.id, links, now).await?;
    if user.updated_at == now {
        return Ok(user);
    }
    store::touch(conn, user, now).await
}

/// A write that lost a race for a unique value (another request took the email meanwhile)
/// is a conflict like any other; everything else is internal.
pub fn write_error(error: DbErr, changes: &UserChanges) -> AppError {
    match store::unique_violation_field(&error) {
        Some(field) => AppError::conflict(vec![FieldError::new(
            changes.path(field),
            "TAKEN",
            format!("{field} is already used by another user"),
        )]),
        None => error.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(row: serde_json::Value) -> UserChanges {
        let row: ImportRow = serde_json::from_value(row).expect("an import row");
        row.parse("users[0]").expect("valid").0
    }

    fn clashes_of(decision: &AppResult<Decision>) -> Vec<(String, String)> {
        match decision {
            Err(AppError::Conflict { field_errors, .. }) => field_errors
                .iter()
                .map(|e| (e.field.clone().unwrap_or_default(), e.code.clone()))
                .collect(),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    /// A chunk of a bulk job reads the rows' keys once, and finds every unique value
    /// another user holds: by email, by login, and by a key it had already read.
    #[tokio::test]
    async fn a_chunk_sees_every_unique_value_another_user_holds() {
        let (_dir, db) = crate::db::scratch_sqlite().await;
        let tenant = TenantId::parse("t1").expect("a tenant");
        let options = UserImportOptions::default();
        for row in [
            serde_json::json!({ "externalId": "u1", "email": "u1@example.com", "login": "lone", "firstName": "A", "lastName": "B" }),
            serde_json::json!({ "externalId": "u2", "email": "u2@example.com", "firstName": "C", "lastName": "D" }),
        ] {
            let row: ImportRow = serde_json::from_value(row).expect("an import row");
            import_user(&db, &tenant, row, &options)
                .await
                .expect("stored");
        }
        let today = Utc::now().date_naive();
        let txn = crate::db::begin_write(&db).await.expect("a transaction");

        let email = changes(
            serde_json::json!({ "externalId": "u3", "email": "U1@example.com", "firstName": "E", "lastName": "F" }),
        );
        let login = changes(
            serde_json::json!({ "externalId": "u4", "email": "u4@example.com", "login": "LONE", "firstName": "G", "lastName": "H" }),
        );
        let decisions = decide_prefix(
            &txn,
            &tenant,
            &[&email, &login],
            &options,
            today,
            &HashSet::new(),
        )
        .await
        .expect("decided");
        assert_eq!(
            clashes_of(&decisions[0]),
            [("users[0].email".to_owned(), "TAKEN".to_owned())]
        );
        assert_eq!(
            clashes_of(&decisions[1]),
            [("users[0].login".to_owned(), "TAKEN".to_owned())]
        );

        // Matched to u1 by its email, the row would give u1 the key u2 holds.
        let rekey = changes(
            serde_json::json!({ "externalId": "u2", "email": "u1@example.com", "firstName": "A", "lastName": "B" }),
        );
        let by_email = UserImportOptions {
            match_by: MatchBy::Email,
            ..options
        };
        let decisions = decide_prefix(&txn, &tenant, &[&rekey], &by_email, today, &HashSet::new())
            .await
            .expect("decided");
        assert_eq!(
            clashes_of(&decisions[0]),
            [("users[0].externalId".to_owned(), "TAKEN".to_owned())]
        );
        txn.rollback().await.expect("rolled back");
    }
}
