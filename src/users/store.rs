//! Reading and writing users, their tags and their attributes. Every function takes the
//! tenant and filters by it: no query here can see another tenant's rows.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{user_attributes, user_tags, users};
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr, LockType, Query, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend,
    DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::lookup::UserKey;
use super::profile::{Attribute, CustomInfo, Gender, Language, Profile};
use crate::auth::TenantId;
use crate::db::UsersKey;
use crate::error::AppError;
use crate::users::domain::AttributeType;
use crate::validate::{Lines, Problem, Problems, check_characters};

/// Values per `IN (…)` list: far below the bind-parameter limits of SQLite (32,766) and
/// PostgreSQL (65,535).
pub const IN_CHUNK: usize = 500;

/// Longest `search` text, and most words in it.
pub const SEARCH_MAX_LEN: usize = 200;
pub const SEARCH_MAX_WORDS: usize = 10;

/// Filters of the `users` listing; every one set must hold.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Every word must occur in the first or last name, the email, the login or the
    /// external id (case-insensitive).
    pub search: Option<String>,
    pub active: Option<bool>,
    /// Compared lower-cased, as tags are stored.
    pub tag: Option<String>,
    /// Exact department name.
    pub department: Option<String>,
    pub source: Option<String>,
    /// A condition on `users.id` built by the caller from another domain: a learning-track
    /// status at an instant (`crate::tracks::status_condition`).
    pub within: Option<sea_orm::sea_query::SimpleExpr>,
}

impl UserFilter {
    /// Refuses filters no user could match or that would make a needlessly heavy query;
    /// problems are named under `filter.*`.
    pub fn check(&self) -> Result<(), AppError> {
        let mut problems = Problems::default();
        let fields = [
            ("search", &self.search, SEARCH_MAX_LEN),
            ("tag", &self.tag, 255),
            ("department", &self.department, 255),
            ("source", &self.source, 255),
        ];
        for (name, value, max) in fields {
            let Some(value) = value else { continue };
            let path = format!("filter.{name}");
            if value.chars().count() > max {
                problems.add(
                    path,
                    Problem::new("TOO_LONG", format!("must be at most {max} characters")),
                );
            } else {
                problems.check(path, check_characters(value, Lines::One));
            }
        }
        if let Some(search) = &self.search
            && search.split_whitespace().count() > SEARCH_MAX_WORDS
        {
            problems.add(
                "filter.search",
                Problem::new("TOO_MANY", format!("at most {SEARCH_MAX_WORDS} words")),
            );
        }
        problems.finish()
    }
}

pub async fn find(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    key: &UserKey,
) -> Result<Option<users::Model>, DbErr> {
    select(tenant, key).one(conn).await
}

fn select(tenant: &TenantId, key: &UserKey) -> sea_orm::Select<users::Entity> {
    let condition = match key {
        UserKey::Id(id) => users::Column::Id.eq(*id),
        UserKey::External {
            source,
            external_id,
        } => users::Column::Source
            .eq(source.as_str())
            .and(users::Column::ExternalId.eq(external_id.as_str())),
        UserKey::Email(email) => users::Column::EmailKey.eq(email.to_lowercase()),
    };
    users::Entity::find()
        .filter(users::Column::Tenant.eq(tenant.as_str()))
        .filter(condition)
}

/// Like [`find`], and on PostgreSQL locks the row (`FOR UPDATE`) until the transaction
/// ends. SQLite needs no row locks: its write transaction holds the whole database.
pub async fn find_for_update(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    key: &UserKey,
) -> Result<Option<users::Model>, DbErr> {
    let query = select(tenant, key);
    if conn.get_database_backend() == DatabaseBackend::Postgres {
        query.lock(LockType::Update).one(conn).await
    } else {
        query.one(conn).await
    }
}

/// Users of the tenant with the given ids; ids of other tenants are absent.
pub async fn by_ids(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
) -> Result<HashMap<i64, users::Model>, DbErr> {
    let mut found = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let users = users::Entity::find()
            .filter(users::Column::Tenant.eq(tenant.as_str()))
            .filter(users::Column::Id.is_in(chunk.iter().copied()))
            .all(conn)
            .await?;
        found.extend(users.into_iter().map(|user| (user.id, user)));
    }
    Ok(found)
}

/// Which of `ids` are users of the tenant. Usually all of them are: each chunk of ids is
/// counted first, and read back id by id only when the count falls short (some are
/// missing, or an id is given twice).
pub async fn existing(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
) -> Result<HashSet<i64>, DbErr> {
    let mut found = HashSet::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let of_chunk = || {
            users::Entity::find()
                .filter(users::Column::Tenant.eq(tenant.as_str()))
                .filter(users::Column::Id.is_in(chunk.iter().copied()))
        };
        if of_chunk().count(conn).await? == chunk.len() as u64 {
            found.extend(chunk);
            continue;
        }
        let rows: Vec<i64> = of_chunk()
            .select_only()
            .column(users::Column::Id)
            .into_tuple()
            .all(conn)
            .await?;
        found.extend(rows);
    }
    Ok(found)
}

/// Each distinct key's user, found with one statement per chunk of each kind of key; with
/// `lock`, the rows stay locked that way (`FOR UPDATE`, `FOR SHARE`) until the transaction
/// ends on PostgreSQL. SQLite needs no row locks: its write transaction holds the database.
pub async fn find_many(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    keys: &[&UserKey],
    lock: Option<LockType>,
) -> Result<HashMap<UserKey, users::Model>, DbErr> {
    find_many_as(conn, tenant, keys, lock).await
}

/// [`find_many`], reading of each user what `M` holds.
pub async fn find_many_as<M: Found>(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    keys: &[&UserKey],
    lock: Option<LockType>,
) -> Result<HashMap<UserKey, M>, DbErr> {
    let Asked {
        ids,
        emails,
        external,
    } = Asked::of(keys);
    let asked_ids: HashSet<i64> = ids.iter().copied().collect();
    let asked_emails: HashSet<String> = emails.iter().cloned().collect();
    let asked_external: HashSet<(&str, &str)> = external.iter().copied().collect();
    let mut conditions = in_chunks(users::Column::Id, ids);
    conditions.extend(in_chunks(users::Column::EmailKey, emails));
    conditions.extend(external_in_chunks(&external));
    let mut found = HashMap::new();
    for user in matching::<M>(conn, tenant, conditions, lock).await? {
        let (source, external_id) = user.external();
        let asked = asked_ids.contains(&user.id())
            || asked_emails.contains(user.email_key())
            || asked_external.contains(&(source, external_id));
        if !asked {
            // The same external id in another source.
            continue;
        }
        let external = UserKey::External {
            source: source.to_owned(),
            external_id: external_id.to_owned(),
        };
        found.insert(UserKey::Id(user.id()), user.clone());
        found.insert(UserKey::Email(user.email_key().to_owned()), user.clone());
        found.insert(external, user);
    }
    Ok(found)
}

/// What a lookup of users reads of each: the whole row ([`users::Model`]), or the few
/// columns that name it ([`Named`]).
pub trait Found: sea_orm::FromQueryResult + Clone + Send + Sync + Sized {
    fn read(query: sea_orm::Select<users::Entity>)
    -> sea_orm::Selector<sea_orm::SelectModel<Self>>;
    fn id(&self) -> i64;
    fn email_key(&self) -> &str;
    /// `(source, external_id)`.
    fn external(&self) -> (&str, &str);
}

impl Found for users::Model {
    fn read(
        query: sea_orm::Select<users::Entity>,
    ) -> sea_orm::Selector<sea_orm::SelectModel<Self>> {
        query.into_model()
    }

    fn id(&self) -> i64 {
        self.id
    }

    fn email_key(&self) -> &str {
        &self.email_key
    }

    fn external(&self) -> (&str, &str) {
        (&self.source, &self.external_id)
    }
}

/// A user as another user's approver is checked against it: who it is, and whether it is
/// active.
#[derive(Debug, Clone, PartialEq, Eq, sea_orm::FromQueryResult)]
pub struct Named {
    pub id: i64,
    pub source: String,
    pub external_id: String,
    pub email: String,
    pub email_key: String,
    pub active: bool,
}

impl Found for Named {
    fn read(
        query: sea_orm::Select<users::Entity>,
    ) -> sea_orm::Selector<sea_orm::SelectModel<Self>> {
        query
            .select_only()
            .columns([
                users::Column::Id,
                users::Column::Source,
                users::Column::ExternalId,
                users::Column::Email,
                users::Column::EmailKey,
                users::Column::Active,
            ])
            .into_model()
    }

    fn id(&self) -> i64 {
        self.id
    }

    fn email_key(&self) -> &str {
        &self.email_key
    }

    fn external(&self) -> (&str, &str) {
        (&self.source, &self.external_id)
    }
}

/// A user's import digest as stored, with what it is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamped {
    pub id: i64,
    pub updated_at: DateTime<Utc>,
    /// `None`: the user carries none.
    pub digest: Option<i64>,
}

/// What [`digests_of`] reads of a user.
#[derive(sea_orm::FromQueryResult)]
struct StampRow {
    id: i64,
    source: String,
    external_id: String,
    updated_at: DateTime<Utc>,
    import_digest: Option<i64>,
}

/// The users named by `keys` (`(source, external_id)`), each read narrowly: its id,
/// `updated_at` and import digest, not the whole user. A key absent from the answer named
/// no user when it was read. No row is locked: a row found unchanged writes nothing, so a
/// write of its user that commits meanwhile comes after it (and locking would write to
/// every row read on PostgreSQL).
pub async fn digests_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    keys: &[(&str, &str)],
) -> Result<HashMap<(String, String), Stamped>, DbErr> {
    let asked: HashSet<(&str, &str)> = keys.iter().copied().collect();
    let mut found = HashMap::with_capacity(keys.len());
    for condition in external_in_chunks(keys) {
        let rows: Vec<StampRow> = users::Entity::find()
            .select_only()
            .columns([
                users::Column::Id,
                users::Column::Source,
                users::Column::ExternalId,
                users::Column::UpdatedAt,
                users::Column::ImportDigest,
            ])
            .filter(users::Column::Tenant.eq(tenant.as_str()))
            .filter(condition)
            .into_model()
            .all(conn)
            .await?;
        for row in rows {
            if asked.contains(&(row.source.as_str(), row.external_id.as_str())) {
                let stamped = Stamped {
                    id: row.id,
                    updated_at: row.updated_at,
                    digest: row.import_digest,
                };
                found.insert((row.source, row.external_id), stamped);
            }
        }
    }
    Ok(found)
}

/// The keys of a lookup by kind, emails lower-cased as they are stored.
struct Asked<'a> {
    ids: Vec<i64>,
    emails: Vec<String>,
    external: Vec<(&'a str, &'a str)>,
}

impl<'a> Asked<'a> {
    fn of(keys: &[&'a UserKey]) -> Self {
        let mut asked = Self {
            ids: Vec::new(),
            emails: Vec::new(),
            external: Vec::new(),
        };
        for key in keys {
            match key {
                UserKey::Id(id) => asked.ids.push(*id),
                UserKey::Email(email) => asked.emails.push(email.to_lowercase()),
                UserKey::External {
                    source,
                    external_id,
                } => asked.external.push((source, external_id)),
            }
        }
        asked
    }
}

/// `column IN (…)` over `values`, a condition per [`IN_CHUNK`] values.
fn in_chunks<V>(column: users::Column, values: Vec<V>) -> Vec<Condition>
where
    V: Into<sea_orm::Value>,
{
    let mut values = values.into_iter().peekable();
    let mut conditions = Vec::new();
    while values.peek().is_some() {
        let chunk: Vec<V> = values.by_ref().take(IN_CHUNK).collect();
        conditions.push(Condition::all().add(column.is_in(chunk)));
    }
    conditions
}

/// `external_id IN (…)` over the external ids of `keys`, whatever their sources: one range
/// of the `(tenant, external_id)` index per [`IN_CHUNK`] keys, however many sources there
/// are. A user with the same external id in another source may come along; callers look
/// users up by their whole key.
fn external_in_chunks(keys: &[(&str, &str)]) -> Vec<Condition> {
    let mut external_ids: Vec<&str> = keys.iter().map(|(_, external_id)| *external_id).collect();
    external_ids.sort_unstable();
    external_ids.dedup();
    in_chunks(users::Column::ExternalId, external_ids)
}

/// The tenant's users that meet any of `conditions`, one statement per condition, each user
/// once, in order of id.
async fn matching<M: Found>(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    conditions: Vec<Condition>,
    lock: Option<LockType>,
) -> Result<Vec<M>, DbErr> {
    let lock = lock.filter(|_| conn.get_database_backend() == DatabaseBackend::Postgres);
    let mut found: HashMap<i64, M> = HashMap::new();
    for condition in conditions {
        let query = M::read(lookup(tenant, condition, lock));
        found.extend(query.all(conn).await?.into_iter().map(|u| (u.id(), u)));
    }
    let mut users: Vec<M> = found.into_values().collect();
    users.sort_unstable_by_key(|u| u.id());
    Ok(users)
}

/// The tenant's users that meet `condition`, in order of id.
fn lookup(
    tenant: &TenantId,
    condition: Condition,
    lock: Option<LockType>,
) -> sea_orm::Select<users::Entity> {
    let query = users::Entity::find()
        .filter(users::Column::Tenant.eq(tenant.as_str()))
        .filter(condition)
        .order_by_asc(users::Column::Id);
    match lock {
        Some(lock) => query.lock(lock),
        None => query,
    }
}

/// Other users of the tenant that may hold the email, the login or the key of `profile`,
/// as [`holders_of_many`] finds them.
pub async fn holders_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profile: &Profile,
    except: Option<i64>,
) -> Result<Vec<users::Model>, DbErr> {
    let mut holders = holders_of_many(conn, tenant, &[profile], None).await?;
    holders.retain(|holder| Some(holder.id) != except);
    Ok(holders)
}

/// Users of the tenant that hold the email, the login or the key of any of `profiles`
/// (and users with one of their external ids in another source: callers compare).
/// `read` is what [`find_many`] read in the same transaction: the keys it was asked and
/// the users it found by them. An email or key asked there is not read again (an import
/// chunk asks each row's key before deciding, and each user it writes keeps its key).
///
/// Each kind of value is looked up through its own index, whatever the planner's
/// statistics say. (One statement asking for any of the three lets SQLite, on a table it
/// has no statistics of, read every user of the tenant instead: a dry run of 10,000 new
/// users spent 10 s of its 16 s there.)
pub async fn holders_of_many(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profiles: &[&Profile],
    read: Option<(&[&UserKey], &HashMap<UserKey, users::Model>)>,
) -> Result<Vec<users::Model>, DbErr> {
    let mut holders: Vec<users::Model> =
        matching(conn, tenant, holder_conditions(profiles, read), None).await?;
    if let Some((_, found)) = read {
        let mut ids: HashSet<i64> = holders.iter().map(|u| u.id).collect();
        holders.extend(found.values().filter(|u| ids.insert(u.id)).cloned());
        holders.sort_unstable_by_key(|u| u.id);
    }
    Ok(holders)
}

/// The lookups of [`holders_of_many`]: emails, logins and external ids, each by its index.
fn holder_conditions(
    profiles: &[&Profile],
    read: Option<(&[&UserKey], &HashMap<UserKey, users::Model>)>,
) -> Vec<Condition> {
    let asked = Asked::of(read.map_or(&[][..], |(keys, _)| keys));
    let asked_emails: HashSet<String> = asked.emails.into_iter().collect();
    let asked_external: HashSet<(&str, &str)> = asked.external.into_iter().collect();
    let mut conditions = in_chunks(
        users::Column::EmailKey,
        profiles
            .iter()
            .map(|p| p.email_key())
            .filter(|email| !asked_emails.contains(email))
            .collect(),
    );
    conditions.extend(in_chunks(
        users::Column::LoginKey,
        profiles.iter().map(|p| p.login_key()).collect(),
    ));
    let keys: Vec<(&str, &str)> = profiles
        .iter()
        .map(|p| (p.source.as_str(), p.external_id.as_str()))
        .filter(|key| !asked_external.contains(key))
        .collect();
    conditions.extend(external_in_chunks(&keys));
    conditions
}

/// Tags of each of `ids`, sorted; users without tags are absent from the map.
pub async fn tags_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<String>>, DbErr> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = user_tags::Entity::find()
        .filter(user_tags::Column::Tenant.eq(tenant.as_str()))
        .filter(user_tags::Column::UserId.is_in(ids.iter().copied()))
        .all(conn)
        .await?;
    let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
    for row in rows {
        tags.entry(row.user_id).or_default().push(row.tag);
    }
    // The database's collation may order text differently from Rust; profiles compare in
    // Rust's order.
    tags.values_mut().for_each(|tags| tags.sort());
    Ok(tags)
}

/// Attributes of each of `ids`, sorted by name.
pub async fn attributes_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<Attribute>>, DbErr> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = user_attributes::Entity::find()
        .filter(user_attributes::Column::Tenant.eq(tenant.as_str()))
        .filter(user_attributes::Column::UserId.is_in(ids.iter().copied()))
        .all(conn)
        .await?;
    let mut attributes: HashMap<i64, Vec<Attribute>> = HashMap::new();
    for row in rows {
        attributes
            .entry(row.user_id)
            .or_default()
            .push(attribute_from(row));
    }
    attributes
        .values_mut()
        .for_each(|list| list.sort_by(|a, b| a.name.cmp(&b.name)));
    Ok(attributes)
}

pub fn attribute_from(row: user_attributes::Model) -> Attribute {
    Attribute {
        kind: AttributeType::from_stored(&row.kind).unwrap_or(AttributeType::String),
        name: row.name,
        value: row.value,
        class: row.class,
    }
}

/// The whole profile of a stored user, tags and attributes included.
pub async fn profile_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user: &users::Model,
) -> Result<Profile, DbErr> {
    let tags = tags_of(conn, tenant, &[user.id])
        .await?
        .remove(&user.id)
        .unwrap_or_default();
    let attributes = attributes_of(conn, tenant, &[user.id])
        .await?
        .remove(&user.id)
        .unwrap_or_default();
    Ok(profile_from(user, tags, attributes))
}

pub fn profile_from(user: &users::Model, tags: Vec<String>, attributes: Vec<Attribute>) -> Profile {
    Profile {
        source: user.source.clone(),
        external_id: user.external_id.clone(),
        email: user.email.clone(),
        login: user.login.clone(),
        first_name: user.first_name.clone(),
        middle_name: user.middle_name.clone(),
        last_name: user.last_name.clone(),
        title: user.title.clone(),
        password_hash: user.password_hash.clone(),
        birth_date: user.birth_date,
        gender: user.gender.as_deref().and_then(Gender::from_stored),
        active: user.active,
        phone: user.phone.clone(),
        city: user.city.clone(),
        department: user.department.clone(),
        position: user.position.clone(),
        company: user.company.clone(),
        work_contact: user.work_contact.clone(),
        structure_uid: user.structure_uid.clone(),
        language: user.language.as_deref().and_then(Language::from_stored),
        facebook_id: user.facebook_id.clone(),
        google_id: user.google_id.clone(),
        employment_start_date: user.employment_start_date,
        employment_end_date: user.employment_end_date,
        position_assigned_date: user.position_assigned_date,
        tags,
        attributes,
        custom_info: user.custom_info.clone().map(CustomInfo),
    }
}

/// The user row of a profile; `id` and `created_at` are left to the caller.
fn columns(tenant: &TenantId, p: &Profile, now: DateTime<Utc>) -> users::ActiveModel {
    users::ActiveModel {
        tenant: Set(tenant.as_str().to_owned()),
        email_key: Set(p.email_key()),
        search_key: Set(p.search_key()),
        login_key: Set(p.login_key()),
        source: Set(p.source.clone()),
        external_id: Set(p.external_id.clone()),
        email: Set(p.email.clone()),
        login: Set(p.login.clone()),
        first_name: Set(p.first_name.clone()),
        middle_name: Set(p.middle_name.clone()),
        last_name: Set(p.last_name.clone()),
        title: Set(p.title.clone()),
        password_hash: Set(p.password_hash.clone()),
        birth_date: Set(p.birth_date),
        gender: Set(p.gender.map(|g| g.as_str().to_owned())),
        active: Set(p.active),
        phone: Set(p.phone.clone()),
        city: Set(p.city.clone()),
        department: Set(p.department.clone()),
        position: Set(p.position.clone()),
        company: Set(p.company.clone()),
        work_contact: Set(p.work_contact.clone()),
        structure_uid: Set(p.structure_uid.clone()),
        language: Set(p.language.map(|l| l.as_str().to_owned())),
        facebook_id: Set(p.facebook_id.clone()),
        google_id: Set(p.google_id.clone()),
        employment_start_date: Set(p.employment_start_date),
        employment_end_date: Set(p.employment_end_date),
        position_assigned_date: Set(p.position_assigned_date),
        custom_info: Set(p.custom_info.as_ref().map(|info| info.0.clone())),
        updated_at: Set(now),
        ..Default::default()
    }
}

/// Users whose tags a write of this module stored: the learning tracks their tags assign
/// must follow, in the same transaction (`crate::tracks::follow`). The writes leave that
/// to their caller, rather than reaching into learning tracks themselves.
#[must_use = "the learning tracks of users whose tags were written must follow them"]
#[derive(Debug, Default)]
pub struct Retagged(Vec<i64>);

impl Retagged {
    pub fn ids(&self) -> &[i64] {
        &self.0
    }

    /// These users and `other`'s.
    pub fn and(mut self, other: Retagged) -> Retagged {
        self.0.extend(other.0);
        self
    }
}

/// Inserts one user, its tags and attributes; answers it as stored.
pub async fn insert(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profile: &Profile,
    now: DateTime<Utc>,
) -> Result<(users::Model, Retagged), DbErr> {
    let (mut ids, retagged) = insert_many(conn, tenant, &[profile], &[], now).await?;
    let id = ids.pop().ok_or(DbErr::RecordNotInserted)?;
    Ok((stored(conn, tenant, id).await?, retagged))
}

/// The user `id` as stored now.
async fn stored(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    id: i64,
) -> Result<users::Model, DbErr> {
    find(conn, tenant, &UserKey::Id(id))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("user {id}")))
}

/// Inserts new users, their tags and attributes, with multi-row statements; returns their
/// ids in the order given, and the users whose tags it wrote. `digests` holds each user's
/// import digest, in the same order (see `crate::jobs::digest`); users past its end have
/// none.
pub async fn insert_many(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    profiles: &[&Profile],
    digests: &[Option<i64>],
    now: DateTime<Utc>,
) -> Result<(Vec<i64>, Retagged), DbErr> {
    let rows: Vec<users::ActiveModel> = profiles
        .iter()
        .enumerate()
        .map(|(i, profile)| {
            let mut row = columns(tenant, profile, now);
            row.created_at = Set(now);
            row.import_digest = Set(digests.get(i).copied().flatten());
            row
        })
        .collect();
    // Only what tells the rows apart: reading whole users back costs more than writing
    // them.
    let returned = crate::db::Insert::new()
        .returning(&[
            users::Column::Id,
            users::Column::Source,
            users::Column::ExternalId,
        ])
        .exec(conn, rows)
        .await?;
    // RETURNING order is not promised: match the rows back by their key.
    let position: HashMap<(&str, &str), usize> = profiles
        .iter()
        .enumerate()
        .map(|(i, p)| ((p.source.as_str(), p.external_id.as_str()), i))
        .collect();
    let mut ids = vec![None; profiles.len()];
    for row in returned {
        let id: i64 = row.try_get_by_index(0)?;
        let source: String = row.try_get_by_index(1)?;
        let external_id: String = row.try_get_by_index(2)?;
        if let Some(&i) = position.get(&(source.as_str(), external_id.as_str())) {
            ids[i] = Some(id);
        }
    }
    let inserted: Vec<i64> = ids
        .into_iter()
        .collect::<Option<_>>()
        .ok_or(DbErr::RecordNotInserted)?;
    let all: Vec<(i64, &Profile)> = inserted
        .iter()
        .copied()
        .zip(profiles.iter().copied())
        .collect();
    let retagged = write_related(conn, tenant, Related::New, &all, &all).await?;
    Ok((inserted, retagged))
}

/// Puts back users that were removed, each with its old id and `created_at` (`(id,
/// created_at, profile)`), their tags and attributes; `updated_at` becomes `now`.
pub async fn reinsert_many(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    users: &[(i64, DateTime<Utc>, &Profile)],
    now: DateTime<Utc>,
) -> Result<Retagged, DbErr> {
    let rows: Vec<users::ActiveModel> = users
        .iter()
        .map(|(id, created_at, profile)| {
            let mut row = columns(tenant, profile, now);
            row.id = Set(*id);
            row.created_at = Set(*created_at);
            row
        })
        .collect();
    crate::db::insert_in_chunks(conn, rows).await?;
    let all: Vec<(i64, &Profile)> = users.iter().map(|(id, _, p)| (*id, *p)).collect();
    write_related(conn, tenant, Related::New, &all, &all).await
}

/// Removes users; their tags, attributes, approver links (both ways), track assignments
/// and completions go with them.
pub async fn delete_many(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
) -> Result<(), DbErr> {
    for chunk in ids.chunks(IN_CHUNK) {
        users::Entity::delete_many()
            .filter(users::Column::Tenant.eq(tenant.as_str()))
            .filter(users::Column::Id.is_in(chunk.iter().copied()))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Writes what differs between `before` and `after`; tags and attributes only when changed.
pub async fn update(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user: &users::Model,
    before: &Profile,
    after: &Profile,
    now: DateTime<Utc>,
) -> Result<(users::Model, Retagged), DbErr> {
    let retagged = update_many(conn, tenant, &[(user, before, after)], &[], now).await?;
    Ok((stored(conn, tenant, user.id).await?, retagged))
}

/// Updates users (each `(stored row, before, after)`) with multi-row upserts on their ids;
/// tags and attributes are rewritten only for users whose tags or attributes changed (the
/// users it answers).
/// `digests` holds each user's new import digest, as for [`insert_many`]; a user past its
/// end loses the one it had.
pub async fn update_many(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    updates: &[(&users::Model, &Profile, &Profile)],
    digests: &[Option<i64>],
    now: DateTime<Utc>,
) -> Result<Retagged, DbErr> {
    use sea_orm::{IdenStatic, Iterable};
    let keep = [
        users::Column::Id,
        users::Column::Tenant,
        users::Column::CreatedAt,
    ];
    let changing: Vec<users::Column> = users::Column::iter()
        .filter(|c| !keep.iter().any(|k| k.as_str() == c.as_str()))
        .collect();
    let rows: Vec<users::ActiveModel> = updates
        .iter()
        .enumerate()
        .map(|(i, (user, _, after))| {
            let mut row = columns(tenant, after, now);
            row.id = Set(user.id);
            row.created_at = Set(user.created_at);
            row.import_digest = Set(digests.get(i).copied().flatten());
            row
        })
        .collect();
    crate::db::Insert::new()
        .on_conflict_update(&[users::Column::Id], &changing)
        .exec(conn, rows)
        .await?;
    let tags: Vec<(i64, &Profile)> = updates
        .iter()
        .filter(|(_, before, after)| before.tags != after.tags)
        .map(|(user, _, after)| (user.id, *after))
        .collect();
    let attributes: Vec<(i64, &Profile)> = updates
        .iter()
        .filter(|(_, before, after)| before.attributes != after.attributes)
        .map(|(user, _, after)| (user.id, *after))
        .collect();
    write_related(conn, tenant, Related::Replace, &tags, &attributes).await
}

/// The stored row of one attribute of the user `user_id`.
pub fn attribute_row(
    tenant: &TenantId,
    user_id: i64,
    attribute: &Attribute,
) -> user_attributes::ActiveModel {
    user_attributes::ActiveModel {
        user_id: Set(user_id),
        name: Set(attribute.name.clone()),
        tenant: Set(tenant.as_str().to_owned()),
        value: Set(attribute.value.clone()),
        kind: Set(attribute.kind.as_str().to_owned()),
        class: Set(attribute.class.clone()),
    }
}

/// Whose tags and attributes [`write_related`] writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Related {
    /// Users inserted just now, who have none yet.
    New,
    /// Stored users, whose tags and attributes are replaced.
    Replace,
}

/// Writes the tags of the users in `tags` and the attributes of those in `attributes`;
/// answers the users whose tags it wrote.
async fn write_related(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    related: Related,
    tags: &[(i64, &Profile)],
    attributes: &[(i64, &Profile)],
) -> Result<Retagged, DbErr> {
    for chunk in tags.chunks(IN_CHUNK) {
        if related == Related::Replace {
            user_tags::Entity::delete_many()
                .filter(user_tags::Column::UserId.is_in(chunk.iter().map(|(id, _)| *id)))
                .exec(conn)
                .await?;
        }
        let rows: Vec<user_tags::ActiveModel> = chunk
            .iter()
            .flat_map(|(id, profile)| {
                profile.tags.iter().map(|tag| user_tags::ActiveModel {
                    user_id: Set(*id),
                    tag: Set(tag.clone()),
                    tenant: Set(tenant.as_str().to_owned()),
                })
            })
            .collect();
        crate::db::insert_in_chunks(conn, rows).await?;
    }
    for chunk in attributes.chunks(IN_CHUNK) {
        if related == Related::Replace {
            user_attributes::Entity::delete_many()
                .filter(user_attributes::Column::UserId.is_in(chunk.iter().map(|(id, _)| *id)))
                .exec(conn)
                .await?;
        }
        let rows: Vec<user_attributes::ActiveModel> = chunk
            .iter()
            .flat_map(|(id, profile)| {
                profile
                    .attributes
                    .iter()
                    .map(|attribute| attribute_row(tenant, *id, attribute))
            })
            .collect();
        crate::db::insert_in_chunks(conn, rows).await?;
    }
    Ok(Retagged(tags.iter().map(|(id, _)| *id).collect()))
}

/// Moves `updated_at` of a user whose related rows (its approvers) changed.
pub async fn touch(
    conn: &impl ConnectionTrait,
    user: users::Model,
    now: DateTime<Utc>,
) -> Result<users::Model, DbErr> {
    let mut row: users::ActiveModel = user.into();
    row.updated_at = Set(now);
    row.update(conn).await
}

/// Moves `updated_at` of many users whose related rows (their approvers) changed.
pub async fn touch_many(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    update_by_ids(
        conn,
        tenant,
        ids,
        &[(users::Column::UpdatedAt, Expr::value(now))],
    )
    .await
}

/// Makes users inactive (sync mode), moving their `updatedAt`.
pub async fn deactivate_many(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let set = [
        (users::Column::Active, Expr::value(false)),
        (users::Column::UpdatedAt, Expr::value(now)),
    ];
    update_by_ids(conn, tenant, ids, &set).await
}

/// Stores import digests (`(user id, digest)`) for users a job found as its rows left
/// them, without moving their `updated_at`: they did not change.
pub async fn stamp_many(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    stamps: &[(i64, i64)],
) -> Result<(), DbErr> {
    for chunk in stamps.chunks(IN_CHUNK) {
        let mut case = sea_orm::sea_query::CaseStatement::new();
        for &(id, digest) in chunk {
            case = case.case(users::Column::Id.eq(id), Expr::value(digest));
        }
        let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
        let digest = case.finally(Expr::col(users::Column::ImportDigest));
        update_by_ids(
            conn,
            tenant,
            &ids,
            &[(users::Column::ImportDigest, digest.into())],
        )
        .await?;
    }
    Ok(())
}

/// Sets the same columns of many users, a bounded number of ids per statement.
async fn update_by_ids(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
    set: &[(users::Column, SimpleExpr)],
) -> Result<(), DbErr> {
    for chunk in ids.chunks(IN_CHUNK) {
        let mut update = users::Entity::update_many();
        for (column, value) in set {
            update = update.col_expr(*column, value.clone());
        }
        update
            .filter(users::Column::Tenant.eq(tenant.as_str()))
            .filter(users::Column::Id.is_in(chunk.iter().copied()))
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Which unique rule of `users` a failed write broke, as the input field that names it;
/// `None` for any other error (a clash in another table is not the input's fault).
pub fn unique_violation_field(error: &DbErr) -> Option<&'static str> {
    Some(match crate::db::taken_users_key(error)? {
        UsersKey::Email => "email",
        UsersKey::Login => "login",
        UsersKey::ExternalId => "externalId",
    })
}

fn filter_condition(tenant: &TenantId, filter: &UserFilter) -> Condition {
    let mut condition = Condition::all().add(users::Column::Tenant.eq(tenant.as_str()));
    if let Some(search) = &filter.search {
        for word in search.split_whitespace() {
            let pattern =
                LikeExpr::new(format!("%{}%", escape_like(&word.to_lowercase()))).escape('\\');
            condition = condition.add(users::Column::SearchKey.like(pattern));
        }
    }
    if let Some(active) = filter.active {
        condition = condition.add(users::Column::Active.eq(active));
    }
    if let Some(department) = &filter.department {
        condition = condition.add(users::Column::Department.eq(department.trim()));
    }
    if let Some(source) = &filter.source {
        condition = condition.add(users::Column::Source.eq(source.trim()));
    }
    if let Some(within) = &filter.within {
        condition = condition.add(within.clone());
    }
    if let Some(tag) = &filter.tag {
        condition = condition.add(
            users::Column::Id.in_subquery(
                Query::select()
                    .column(user_tags::Column::UserId)
                    .from(user_tags::Entity)
                    .and_where(user_tags::Column::Tenant.eq(tenant.as_str()))
                    .and_where(user_tags::Column::Tag.eq(tag.trim().to_lowercase()))
                    .to_owned(),
            ),
        );
    }
    condition
}

/// `text` matched literally inside a `LIKE` pattern whose escape character is `\`.
pub fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Up to `limit` users after the one with id `after`, in id order (the order they were
/// created in, stable under inserts elsewhere).
pub async fn page(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    filter: &UserFilter,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<users::Model>, DbErr> {
    let mut query = users::Entity::find().filter(filter_condition(tenant, filter));
    if let Some(after) = after {
        query = query.filter(users::Column::Id.gt(after));
    }
    query
        .order_by_asc(users::Column::Id)
        .limit(limit)
        .all(conn)
        .await
}

pub async fn count(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    filter: &UserFilter,
) -> Result<u64, DbErr> {
    users::Entity::find()
        .filter(filter_condition(tenant, filter))
        .count(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::import::{ImportRow, UserImportOptions, import_user};

    /// `existing` answers each id: all of them when all are there, and without those of
    /// another tenant, removed, or never stored.
    #[tokio::test]
    async fn existing_names_only_the_tenants_stored_users() {
        let (_dir, db) = crate::db::scratch_sqlite().await;
        let (t1, t2) = (TenantId::parse("t1"), TenantId::parse("t2"));
        let (t1, t2) = (t1.expect("a tenant"), t2.expect("a tenant"));
        let mut ids = Vec::new();
        for (tenant, key) in [(&t1, "a"), (&t1, "b"), (&t1, "c"), (&t2, "d")] {
            let row: ImportRow = serde_json::from_value(serde_json::json!({
                "externalId": key, "email": format!("{key}@example.com"),
                "firstName": "F", "lastName": "L",
            }))
            .expect("an import row");
            let outcome = import_user(&db, tenant, row, &UserImportOptions::default())
                .await
                .expect("stored");
            ids.push(outcome.user.expect("a user").id);
        }
        let [a, b, c, d] = ids[..] else {
            unreachable!()
        };
        let set = |ids: &[i64]| ids.iter().copied().collect::<HashSet<i64>>();

        assert_eq!(
            existing(&db, &t1, &[a, b, c]).await.expect("read"),
            set(&[a, b, c])
        );
        let never = d + 1_000;
        let asked = existing(&db, &t1, &[a, b, c, d, never])
            .await
            .expect("read");
        assert_eq!(asked, set(&[a, b, c]));
        delete_many(&db, &t1, &[b]).await.expect("removed");
        assert_eq!(
            existing(&db, &t1, &[a, b, c]).await.expect("read"),
            set(&[a, c])
        );
        assert_eq!(existing(&db, &t2, &[a, d]).await.expect("read"), set(&[d]));
    }

    /// Each lookup that checks a user's unique values searches the index of the value it
    /// looks for, on a table SQLite has no statistics of yet.
    #[tokio::test]
    async fn holders_are_looked_up_through_their_own_indexes() {
        use sea_orm::QueryTrait;

        let (_dir, db) = crate::db::scratch_sqlite().await;
        let tenant = TenantId::parse("t1").expect("a tenant");
        let row: ImportRow = serde_json::from_value(serde_json::json!({
            "externalId": "h1", "email": "h1@example.com", "login": "h1",
            "firstName": "F", "lastName": "L",
        }))
        .expect("an import row");
        let outcome = import_user(&db, &tenant, row, &UserImportOptions::default())
            .await
            .expect("stored");
        let profile = profile_from(&outcome.user.expect("a user"), Vec::new(), Vec::new());

        let conditions = holder_conditions(&[&profile], None);
        assert_eq!(conditions.len(), 3);
        for (condition, column) in
            conditions
                .into_iter()
                .zip(["email_key", "login_key", "external_id"])
        {
            let mut statement = lookup(&tenant, condition, None).build(DatabaseBackend::Sqlite);
            statement.sql = format!("EXPLAIN QUERY PLAN {}", statement.sql);
            let steps: Vec<String> = db
                .query_all_raw(statement)
                .await
                .expect("a plan")
                .iter()
                .map(|step| step.try_get::<String>("", "detail").expect("a step"))
                .collect();
            let search = format!("(tenant=? AND {column}=?)");
            assert!(
                steps
                    .iter()
                    .any(|step| step.starts_with("SEARCH") && step.contains(&search)),
                "{column}: {steps:?}"
            );
        }
    }
}
