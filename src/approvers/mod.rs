//! Approvers (seed 003): who approves whose bookings, and who sees whom. No GraphQL here
//! but in `graphql`.
//!
//! A user's approver set is checked as a whole before anything is written: each approver
//! exists and is active in the tenant, nobody approves for themself, at most one `MANAGER`
//! and one `HIGHER_MANAGER`, a `NON_APPROVING_MANAGER` never approves, and `MANAGER` links
//! never form a cycle (checked against the links stored in the database).

pub mod graphql;
pub mod store;

use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::LockType;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use chrono::Utc;
use entity::users::Model as User;

use crate::auth::TenantId;
use crate::db;
use crate::error::{AppError, AppResult, FieldError};
use crate::users::lookup::UserKey;
use crate::users::profile::Patch;
use crate::users::store as users;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    /// The direct manager: sees and approves.
    Manager,
    /// Sees, never approves.
    NonApprovingManager,
    /// The manager's manager: sees and approves bookings over a price.
    HigherManager,
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manager => "MANAGER",
            Self::NonApprovingManager => "NON_APPROVING_MANAGER",
            Self::HigherManager => "HIGHER_MANAGER",
        }
    }

    pub fn from_stored(text: &str) -> Option<Self> {
        [
            Self::Manager,
            Self::NonApprovingManager,
            Self::HigherManager,
        ]
        .into_iter()
        .find(|label| label.as_str() == text)
    }

    /// At most one link of this label per user.
    fn is_single(self) -> bool {
        matches!(self, Self::Manager | Self::HigherManager)
    }
}

impl Serialize for Label {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Self::from_stored(&name).ok_or_else(|| {
            serde::de::Error::unknown_variant(
                &name,
                &["MANAGER", "NON_APPROVING_MANAGER", "HIGHER_MANAGER"],
            )
        })
    }
}

/// A `UserLookup` as sent, before checking (see [`UserKey::from_parts`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawLookup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl RawLookup {
    pub fn key(&self, path: &str) -> AppResult<UserKey> {
        UserKey::from_parts(
            self.id.as_deref(),
            self.external_id.as_deref(),
            self.source.as_deref(),
            self.email.as_deref(),
            path,
        )
    }
}

/// An `ApproverInput` as sent, before checking.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawApprover {
    pub approver: RawLookup,
    #[serde(default = "manager")]
    pub label: Label,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_approve: Option<bool>,
}

fn manager() -> Label {
    Label::Manager
}

/// The specs of a list of approvers, every bad lookup named (not only the first); each
/// comes with its input path `{prefix}[i]`.
pub fn specs(approvers: &[RawApprover], prefix: &str) -> AppResult<Vec<(ApproverSpec, String)>> {
    let mut specs = Vec::with_capacity(approvers.len());
    let mut problems = Vec::new();
    for (i, approver) in approvers.iter().enumerate() {
        let path = format!("{prefix}[{i}]");
        match approver.approver.key(&format!("{path}.approver")) {
            Ok(key) => specs.push((
                ApproverSpec {
                    approver: key,
                    label: approver.label,
                    can_approve: approver.can_approve,
                },
                path,
            )),
            Err(AppError::BadUserInput { field_errors, .. }) => problems.extend(field_errors),
            Err(other) => return Err(other),
        }
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(AppError::invalid_fields(problems))
    }
}

/// What an import row says about approvers, as sent: `approvers` and `managerExternalId`
/// of `UserImportInput`, each omitted, `null` or given.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawLinks {
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub approvers: Patch<Vec<RawApprover>>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub manager_external_id: Patch<String>,
}

impl RawLinks {
    /// Whether the row says anything about approvers.
    pub fn sends_links(&self) -> bool {
        !(self.approvers.is_keep() && self.manager_external_id.is_keep())
    }

    /// The checked change for a user of `source`; problems are named under `{prefix}.…`.
    pub fn change(&self, source: Option<&str>, prefix: &str) -> AppResult<ApproverChange> {
        let source = source.unwrap_or(crate::users::profile::DEFAULT_SOURCE);
        let manager_path = format!("{prefix}.managerExternalId");
        let manager = match &self.manager_external_id {
            Patch::Keep => None,
            Patch::Clear => Some(None),
            Patch::Set(external_id) => Some(Some(UserKey::from_parts(
                None,
                Some(external_id),
                Some(source),
                None,
                &manager_path,
            )?)),
        };
        let approvers = match &self.approvers {
            Patch::Keep => None,
            Patch::Clear => Some(Vec::new()),
            Patch::Set(approvers) => Some(specs(approvers, &format!("{prefix}.approvers"))?),
        };
        Ok(match (approvers, manager) {
            (None, None) => ApproverChange::Keep,
            (None, Some(manager)) => {
                ApproverChange::SetManager(manager.map(ApproverSpec::manager), manager_path)
            }
            (Some(mut specs), manager) => {
                specs.extend(
                    manager
                        .flatten()
                        .map(|key| (ApproverSpec::manager(key), manager_path.clone())),
                );
                ApproverChange::Replace(specs)
            }
        })
    }
}

/// One approver as an input names it.
#[derive(Debug, Clone)]
pub struct ApproverSpec {
    pub approver: UserKey,
    pub label: Label,
    /// `None`: true for `MANAGER` and `HIGHER_MANAGER`, false for `NON_APPROVING_MANAGER`.
    pub can_approve: Option<bool>,
}

impl ApproverSpec {
    /// The `MANAGER` that `managerExternalId` names, with the default `canApprove`.
    pub fn manager(approver: UserKey) -> Self {
        Self {
            approver,
            label: Label::Manager,
            can_approve: None,
        }
    }
}

/// What an import says about the user's approvers.
#[derive(Debug, Clone, Default)]
pub enum ApproverChange {
    /// Neither `approvers` nor `managerExternalId` was sent.
    #[default]
    Keep,
    /// `approvers` was sent (with `managerExternalId`'s manager appended, when sent too):
    /// the set becomes exactly this. `approvers: null` is an empty set. Each spec comes
    /// with the input path its problems are named under.
    Replace(Vec<(ApproverSpec, String)>),
    /// Only `managerExternalId` was sent: the `MANAGER` link becomes this one (`None`, for
    /// `null`, removes it); other labels stay. With the input path of `managerExternalId`.
    SetManager(Option<ApproverSpec>, String),
}

impl ApproverChange {
    /// Whether the import may change the approver set: it names approvers, or `replace`
    /// clears the ones it does not name.
    pub fn touches_links(&self, replace: bool) -> bool {
        replace || !matches!(self, Self::Keep)
    }

    /// Every approver the change names.
    pub fn specs(&self) -> impl Iterator<Item = &ApproverSpec> {
        let (replace, manager) = match self {
            Self::Keep => (&[][..], None),
            Self::Replace(specs) => (specs.as_slice(), None),
            Self::SetManager(manager, _) => (&[][..], manager.as_ref()),
        };
        replace.iter().map(|(spec, _)| spec).chain(manager)
    }
}

/// One checked link of a user's approver set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Link {
    pub approver_id: i64,
    pub label: Label,
    pub can_approve: bool,
}

/// Puts a set in the one order sets are stored and compared in.
pub fn sort_links(links: &mut [Link]) {
    links.sort_by_key(|l| (l.approver_id, l.label.as_str()));
}

/// Longest `MANAGER` chain followed when looking for a cycle; a change that would need a
/// longer walk is refused (`CHAIN_TOO_DEEP`) rather than let through unchecked.
const MAX_CHAIN: usize = 1000;

/// Checks a whole approver set for the user `user_id` (`None` for a user not yet stored);
/// the problem of `specs[i]` with its `field` is named `path(i, field)`. A `MANAGER` the
/// user already has in `stored` is part of the acyclic stored graph, so keeping it needs no
/// walk up the chain.
pub async fn check_set(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user_id: Option<i64>,
    stored: &[Link],
    specs: &[ApproverSpec],
    path: impl Fn(usize, &str) -> String,
) -> AppResult<Result<Vec<Link>, Vec<FieldError>>> {
    let snapshot = Snapshot::load(conn, tenant, &[], specs).await?;
    Ok(snapshot.check(user_id, stored, specs, path))
}

/// What checking the approver sets of many users reads from the store, read at once for
/// all of them with a few statements: the approvers their specs name, the users' stored
/// sets, and the `MANAGER` chains above every named manager (one recursive statement).
///
/// Sets are then checked in memory one after another, and each accepted set
/// ([`Snapshot::accept`]) is seen by the checks after it, so every user gets exactly the
/// answer it would get if each set were checked and written alone, in order. The caller
/// holds the tenant's approver lock ([`LOCK_KIND`]), so the links cannot change meanwhile.
pub struct Snapshot {
    /// The named approvers, by every key they can be named with.
    approvers: HashMap<UserKey, users::Named>,
    /// The users' sets as stored, and as accepted since.
    stored: HashMap<i64, Vec<Link>>,
    sets: HashMap<i64, Vec<Link>>,
    /// The `MANAGER` of each user on the loaded chains (`None`: it has none), as accepted.
    managers: HashMap<i64, Option<i64>>,
}

impl Snapshot {
    /// Reads what checking `specs` for the users `users` needs. Approvers are read with a
    /// share lock (PostgreSQL): one being deactivated meanwhile is seen as inactive, not
    /// as it was.
    pub async fn load<'a>(
        conn: &impl ConnectionTrait,
        tenant: &TenantId,
        users: &[i64],
        specs: impl IntoIterator<Item = &'a ApproverSpec>,
    ) -> Result<Self, DbErr> {
        let specs: Vec<&ApproverSpec> = specs.into_iter().collect();
        let mut snapshot = Self::read(conn, tenant, users, &specs, Some(LockType::Share)).await?;
        let named: Vec<i64> = specs
            .iter()
            .filter(|spec| spec.label == Label::Manager)
            .filter_map(|spec| snapshot.approvers.get(&spec.approver))
            .map(|approver| approver.id)
            .collect::<HashSet<i64>>()
            .into_iter()
            .collect();
        let above = store::managers_above(conn, tenant, &named).await?;
        // Every user on the chains, with its manager or `None` at the top.
        snapshot.managers = named
            .iter()
            .chain(above.values())
            .map(|id| (*id, above.get(id).copied()))
            .collect();
        Ok(snapshot)
    }

    /// Reads only what tells whether sets stay as stored: the approvers `specs` name
    /// (without a lock) and the stored sets of `users`, not the `MANAGER` chains. A check
    /// against it that finds a set unchanged ([`crate::users::import::plan_links`] answering
    /// `None`) is the check [`Self::load`] would give: only a new manager's chain is
    /// walked. Any other answer must be checked again against a whole snapshot.
    pub async fn load_stored<'a>(
        conn: &impl ConnectionTrait,
        tenant: &TenantId,
        users: &[i64],
        specs: impl IntoIterator<Item = &'a ApproverSpec>,
    ) -> Result<Self, DbErr> {
        let specs: Vec<&ApproverSpec> = specs.into_iter().collect();
        Self::read(conn, tenant, users, &specs, None).await
    }

    /// The approvers `specs` name (with `lock` on PostgreSQL) and the stored sets of
    /// `users`; no chains yet.
    async fn read(
        conn: &impl ConnectionTrait,
        tenant: &TenantId,
        users: &[i64],
        specs: &[&ApproverSpec],
        lock: Option<LockType>,
    ) -> Result<Self, DbErr> {
        let keys: HashSet<&UserKey> = specs.iter().map(|spec| &spec.approver).collect();
        let keys: Vec<&UserKey> = keys.into_iter().collect();
        let approvers = users::find_many_as(conn, tenant, &keys, lock).await?;
        let stored = store::sets_of(conn, tenant, users).await?;
        Ok(Self {
            approvers,
            sets: stored.clone(),
            stored,
            managers: HashMap::new(),
        })
    }

    /// The set of a loaded user as it stands (stored, or accepted since).
    pub fn set(&self, user_id: i64) -> &[Link] {
        self.sets.get(&user_id).map_or(&[], Vec::as_slice)
    }

    /// Records `links` as the new set of `user_id`: later checks see it.
    pub fn accept(&mut self, user_id: i64, links: Vec<Link>) {
        let manager = links
            .iter()
            .find(|link| link.label == Label::Manager)
            .map(|link| link.approver_id);
        self.managers.insert(user_id, manager);
        self.sets.insert(user_id, links);
    }

    /// Every user whose accepted set differs from the stored one.
    pub fn changes(&self) -> Vec<store::SetChange<'_>> {
        let mut changes: Vec<store::SetChange<'_>> = self
            .sets
            .iter()
            .filter_map(|(&user_id, new)| {
                let stored = self.stored.get(&user_id).map_or(&[][..], Vec::as_slice);
                (stored != new.as_slice()).then_some(store::SetChange {
                    user_id,
                    stored,
                    new,
                })
            })
            .collect();
        changes.sort_by_key(|change| change.user_id);
        changes
    }

    /// Checks one set against the snapshot, as [`check_set`] describes; every spec must
    /// have been among those loaded.
    pub fn check(
        &self,
        user_id: Option<i64>,
        stored: &[Link],
        specs: &[ApproverSpec],
        path: impl Fn(usize, &str) -> String,
    ) -> Result<Vec<Link>, Vec<FieldError>> {
        let mut problems = Vec::new();
        let mut links: Vec<Link> = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let at = |field: &str| path(index, field);
            let can_approve = match (spec.label, spec.can_approve) {
                (Label::NonApprovingManager, Some(true)) => {
                    problems.push(FieldError::new(
                        at("canApprove"),
                        "NOT_ALLOWED",
                        "a NON_APPROVING_MANAGER never approves",
                    ));
                    continue;
                }
                (Label::NonApprovingManager, _) => false,
                (_, can_approve) => can_approve.unwrap_or(true),
            };
            let Some(approver) = self.approvers.get(&spec.approver) else {
                problems.push(FieldError::new(
                    at("approver"),
                    "NOT_FOUND",
                    "no such user: an approver must be an existing, active user",
                ));
                continue;
            };
            if Some(approver.id) == user_id {
                problems.push(FieldError::new(
                    at("approver"),
                    "SELF",
                    "nobody approves for themself",
                ));
                continue;
            }
            if !approver.active {
                problems.push(FieldError::new(
                    at("approver"),
                    "INACTIVE",
                    format!("{} is not active", approver.email),
                ));
                continue;
            }
            if links
                .iter()
                .any(|l| l.approver_id == approver.id && l.label == spec.label)
            {
                problems.push(FieldError::new(
                    at("approver"),
                    "DUPLICATE",
                    "this approver is given twice with this label",
                ));
                continue;
            }
            if spec.label.is_single() && links.iter().any(|l| l.label == spec.label) {
                problems.push(FieldError::new(
                    at("label"),
                    "TOO_MANY",
                    format!("a user has at most one {}", spec.label.as_str()),
                ));
                continue;
            }
            let kept = stored
                .iter()
                .any(|l| l.label == Label::Manager && l.approver_id == approver.id);
            if spec.label == Label::Manager
                && !kept
                && let Some(user_id) = user_id
            {
                match self.chain(approver.id, user_id) {
                    Chain::Clear => {}
                    Chain::Cycle => {
                        problems.push(FieldError::new(
                            at("approver"),
                            "CYCLE",
                            format!(
                                "{} is managed, directly or not, by this user: MANAGER links cannot form a cycle",
                                approver.email
                            ),
                        ));
                        continue;
                    }
                    Chain::TooDeep => {
                        problems.push(FieldError::new(
                            at("approver"),
                            "CHAIN_TOO_DEEP",
                            format!(
                                "the MANAGER chain above {} is longer than {MAX_CHAIN}",
                                approver.email
                            ),
                        ));
                        continue;
                    }
                }
            }
            links.push(Link {
                approver_id: approver.id,
                label: spec.label,
                can_approve,
            });
        }
        if problems.is_empty() {
            sort_links(&mut links);
            Ok(links)
        } else {
            Err(problems)
        }
    }

    /// Whether `user_id` is `from` or one of its managers, following `MANAGER` links
    /// upwards from `from`.
    fn chain(&self, from: i64, user_id: i64) -> Chain {
        let mut seen = HashSet::new();
        let mut current = from;
        loop {
            if current == user_id {
                return Chain::Cycle;
            }
            if !seen.insert(current) {
                // A cycle above, not through this user (stored before these rules held).
                return Chain::Clear;
            }
            if seen.len() > MAX_CHAIN {
                return Chain::TooDeep;
            }
            match self.managers.get(&current) {
                Some(Some(manager)) => current = *manager,
                Some(None) => return Chain::Clear,
                // Never read (the snapshot reads every chain whole): refused, not guessed.
                None => return Chain::TooDeep,
            }
        }
    }
}

/// What walking up the `MANAGER` links found.
enum Chain {
    Clear,
    Cycle,
    TooDeep,
}

/// The user whose set changes, with the tenant's approver changes serialised: two
/// concurrent changes could otherwise each pass the checks (one `MANAGER`, no cycle) and
/// together break them.
async fn find_user(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    key: &UserKey,
) -> AppResult<User> {
    db::lock_tenant(conn, LOCK_KIND, tenant).await?;
    users::find(conn, tenant, key)
        .await?
        .ok_or_else(|| AppError::NotFound("no such user".to_owned()))
}

/// The advisory-lock namespace of approver changes.
pub const LOCK_KIND: &str = "approvers";

/// Stores the user's new set; when it changed, the user's `updatedAt` moves with it.
async fn write_set(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user: User,
    links: &[Link],
) -> AppResult<User> {
    let now = Utc::now();
    if store::replace_set(conn, tenant, user.id, links, now).await? {
        Ok(users::touch(conn, user, now).await?)
    } else {
        Ok(user)
    }
}

/// `setApprovers`: the user's approver set becomes exactly `specs`.
pub async fn set_approvers(
    db: &DatabaseConnection,
    tenant: &TenantId,
    user: &UserKey,
    specs: &[ApproverSpec],
) -> AppResult<User> {
    let txn = db::begin_write(db).await?;
    let user = find_user(&txn, tenant, user).await?;
    let links = check_set(&txn, tenant, Some(user.id), &[], specs, |i, field| {
        format!("approvers[{i}].{field}")
    })
    .await?
    .map_err(AppError::invalid_fields)?;
    let user = write_set(&txn, tenant, user, &links).await?;
    txn.commit().await?;
    Ok(user)
}

/// `addApprover`: adds one link, or changes `canApprove` of the same approver and label.
pub async fn add_approver(
    db: &DatabaseConnection,
    tenant: &TenantId,
    user: &UserKey,
    spec: &ApproverSpec,
) -> AppResult<User> {
    let txn = db::begin_write(db).await?;
    let user = find_user(&txn, tenant, user).await?;
    let mut links = check_set(
        &txn,
        tenant,
        Some(user.id),
        &[],
        std::slice::from_ref(spec),
        |_, field| format!("approver.{field}"),
    )
    .await?
    .map_err(AppError::invalid_fields)?;
    let added = links.remove(0);
    let mut set = store::set_of(&txn, tenant, user.id).await?;
    set.retain(|l| !(l.approver_id == added.approver_id && l.label == added.label));
    if added.label.is_single() && set.iter().any(|l| l.label == added.label) {
        return Err(AppError::invalid_fields(vec![FieldError::new(
            "approver.label",
            "TOO_MANY",
            format!(
                "the user already has a {}: remove it first, or use setApprovers",
                added.label.as_str()
            ),
        )]));
    }
    set.push(added);
    sort_links(&mut set);
    let user = write_set(&txn, tenant, user, &set).await?;
    txn.commit().await?;
    Ok(user)
}

/// `removeApprover`: removes every link from the user to this approver, whatever its label.
/// Removing an approver who has no link to the user changes nothing.
pub async fn remove_approver(
    db: &DatabaseConnection,
    tenant: &TenantId,
    user: &UserKey,
    approver: &UserKey,
) -> AppResult<User> {
    let txn = db::begin_write(db).await?;
    let user = find_user(&txn, tenant, user).await?;
    let Some(approver) = users::find(&txn, tenant, approver).await? else {
        return Err(AppError::invalid_fields(vec![FieldError::new(
            "approver",
            "NOT_FOUND",
            "no such user",
        )]));
    };
    let mut set = store::set_of(&txn, tenant, user.id).await?;
    set.retain(|l| l.approver_id != approver.id);
    let user = write_set(&txn, tenant, user, &set).await?;
    txn.commit().await?;
    Ok(user)
}
