//! A person of one tenant, keyed by `(tenant, source, external_id)`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub tenant: String,
    pub source: String,
    pub external_id: String,
    pub email: String,
    /// The email lower-cased: what uniqueness and lookups compare.
    pub email_key: String,
    pub login: String,
    /// The login lower-cased: what uniqueness compares.
    pub login_key: String,
    pub first_name: String,
    pub middle_name: Option<String>,
    pub last_name: String,
    pub title: Option<String>,
    /// A PHC string (argon2id) or a bcrypt hash; never the password.
    pub password_hash: Option<String>,
    pub birth_date: Option<Date>,
    /// `MALE`, `FEMALE` or `OTHER`.
    pub gender: Option<String>,
    pub active: bool,
    /// E.164.
    pub phone: Option<String>,
    pub city: Option<String>,
    pub department: Option<String>,
    pub position: Option<String>,
    pub company: Option<String>,
    pub work_contact: Option<String>,
    pub structure_uid: Option<String>,
    /// One of the `Language` enum values, e.g. `EN`.
    pub language: Option<String>,
    pub facebook_id: Option<String>,
    pub google_id: Option<String>,
    pub employment_start_date: Option<Date>,
    pub employment_end_date: Option<Date>,
    pub position_assigned_date: Option<Date>,
    pub custom_info: Option<Json>,
    /// Names, email, login and external id, lower-cased (Unicode-aware) and joined by
    /// spaces: what `users(filter: {search})` matches.
    pub search_key: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// What the bulk import that last wrote the user sent for it, bound to the
    /// `updated_at` that write left (see `roster::jobs::digest`): it says nothing once
    /// anything moves `updated_at`, and other writes of the row clear it.
    pub import_digest: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
