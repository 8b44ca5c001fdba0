//! What an import says about a user, and what a user is after it.
//!
//! [`RawUser`] is the input as it arrives (any transport), with every optional field in one
//! of three states ([`Patch`]): omitted, explicit `null`, or a value. [`UserChanges::parse`]
//! turns it into checked values, collecting every problem with its input path.
//! [`UserChanges::apply`] merges the changes into the user's previous [`Profile`] by the
//! contract's rules: omitted fields keep their value, `null` clears, `replace` clears every
//! omitted optional field. Two profiles compare equal exactly when an import changes nothing.

use std::collections::HashSet;

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value as Json;

use super::domain::{AttributeType, Email, PasswordHashString, Phone, Tags, parse_date};
use crate::error::FieldError;
use crate::validate::{Lines, Problem, Problems, check_characters, optional_text, required_text};

/// One optional input field: left out, sent as `null`, or sent with a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T> Patch<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Patch<U> {
        match self {
            Self::Keep => Patch::Keep,
            Self::Clear => Patch::Clear,
            Self::Set(value) => Patch::Set(f(value)),
        }
    }

    pub fn is_keep(&self) -> bool {
        matches!(self, Self::Keep)
    }

    /// Checks a sent value; a refused value is recorded and the field is left as it was.
    fn check<U>(
        self,
        problems: &mut Problems,
        path: String,
        parse: impl FnOnce(T) -> Result<U, Problem>,
    ) -> Patch<U> {
        match self {
            Self::Keep => Patch::Keep,
            Self::Clear => Patch::Clear,
            Self::Set(value) => problems
                .check(path, parse(value))
                .map_or(Patch::Keep, Patch::Set),
        }
    }

    /// The value after the change, given the value before it.
    fn merge(&self, before: Option<T>, replace: bool) -> Option<T>
    where
        T: Clone,
    {
        match self {
            Self::Set(value) => Some(value.clone()),
            Self::Clear => None,
            Self::Keep if replace => None,
            Self::Keep => before,
        }
    }
}

impl<T> Patch<Option<T>> {
    /// Blank text parsed to `None` means the same as `null`.
    fn flatten(self) -> Patch<T> {
        match self {
            Self::Set(Some(value)) => Patch::Set(value),
            Self::Set(None) | Self::Clear => Patch::Clear,
            Self::Keep => Patch::Keep,
        }
    }
}

/// On the wire (a stored job row), a patch is a field of an object: left out for `Keep`,
/// `null` for `Clear`, the value for `Set`. Fields of this type need
/// `#[serde(default, skip_serializing_if = "Patch::is_keep")]`.
impl<T: Serialize> Serialize for Patch<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Set(value) => serializer.serialize_some(value),
            Self::Keep | Self::Clear => serializer.serialize_none(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(deserializer)?.map_or(Self::Clear, Self::Set))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gender {
    Male,
    Female,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The stored spelling of the small enums, which is also their GraphQL name.
macro_rules! stored_names {
    ($type:ty { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $type {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }

            pub fn from_stored(name: &str) -> Option<Self> {
                match name { $($name => Some(Self::$variant),)+ _ => None }
            }
        }

        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
                Self::from_stored(&name).ok_or_else(|| {
                    serde::de::Error::unknown_variant(&name, &[$($name),+])
                })
            }
        }
    };
}

stored_names!(Gender { Male => "MALE", Female => "FEMALE", Other => "OTHER" });
stored_names!(Language {
    En => "EN", Uk => "UK", De => "DE", Es => "ES", Et => "ET",
    Tr => "TR", Ru => "RU", Nl => "NL", Fr => "FR",
});
stored_names!(AttributeType {
    String => "STRING", Number => "NUMBER", Boolean => "BOOLEAN", Date => "DATE",
});

/// `customInfo`: any JSON. Numbers compare by value: PostgreSQL may hand `1e16` back as
/// `10000000000000000`, and a re-sent user must still be unchanged.
#[derive(Debug, Clone)]
pub struct CustomInfo(pub Json);

impl PartialEq for CustomInfo {
    fn eq(&self, other: &Self) -> bool {
        same_json(&self.0, &other.0)
    }
}

impl Eq for CustomInfo {}

fn same_json(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => {
            x == y
                || match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                    (Some(p), Some(q), _, _) => p == q,
                    (_, _, Some(p), Some(q)) => p == q,
                    _ => x.as_f64() == y.as_f64(),
                }
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_json(v, w))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, v)| y.get(key).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// Every string of a JSON value, keys included, by the rule of text of many lines.
fn check_json_characters(json: &Json) -> Result<(), Problem> {
    match json {
        Json::String(text) => check_characters(text, Lines::Many),
        Json::Array(items) => items.iter().try_for_each(check_json_characters),
        Json::Object(map) => map.iter().try_for_each(|(key, value)| {
            check_characters(key, Lines::Many)?;
            check_json_characters(value)
        }),
        _ => Ok(()),
    }
}

/// One attribute as sent; a `null` value means the user does not have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawAttribute {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(rename = "type", default = "string_type")]
    pub kind: AttributeType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

fn string_type() -> AttributeType {
    AttributeType::String
}

/// One attribute as stored: its value in the canonical form of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: String,
    pub kind: AttributeType,
    pub class: Option<String>,
}

/// A user as an import sends it, before any checking.
///
/// Its serde form is the `UserImportInput` object of the API (camelCase keys, omitted fields
/// left out), which is how a bulk job keeps its rows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawUser {
    pub external_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub email: String,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub login: Patch<String>,
    pub first_name: String,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub middle_name: Patch<String>,
    pub last_name: String,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub title: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub password: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub password_hash: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub birth_date: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub gender: Patch<Gender>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub active: Patch<bool>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub phone: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub city: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub department: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub position: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub company: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub work_contact: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub structure_uid: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub language: Patch<Language>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub facebook_id: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub google_id: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub employment_start_date: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub employment_end_date: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub position_assigned_date: Patch<String>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub tags: Patch<Vec<String>>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub attributes: Patch<Vec<RawAttribute>>,
    #[serde(default, skip_serializing_if = "Patch::is_keep")]
    pub custom_info: Patch<Json>,
}

/// Everything Roster keeps about a user, apart from its id and timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub source: String,
    pub external_id: String,
    pub email: String,
    pub login: String,
    pub first_name: String,
    pub middle_name: Option<String>,
    pub last_name: String,
    pub title: Option<String>,
    pub password_hash: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub gender: Option<Gender>,
    pub active: bool,
    pub phone: Option<String>,
    pub city: Option<String>,
    pub department: Option<String>,
    pub position: Option<String>,
    pub company: Option<String>,
    pub work_contact: Option<String>,
    pub structure_uid: Option<String>,
    pub language: Option<Language>,
    pub facebook_id: Option<String>,
    pub google_id: Option<String>,
    pub employment_start_date: Option<NaiveDate>,
    pub employment_end_date: Option<NaiveDate>,
    pub position_assigned_date: Option<NaiveDate>,
    /// Sorted, so that equal sets compare equal.
    pub tags: Vec<String>,
    /// Sorted by name.
    pub attributes: Vec<Attribute>,
    pub custom_info: Option<CustomInfo>,
}

impl Profile {
    pub fn email_key(&self) -> String {
        self.email.to_lowercase()
    }

    pub fn login_key(&self) -> String {
        self.login.to_lowercase()
    }

    /// What text search matches: every name and key, lower-cased, joined by spaces (a
    /// search word has no spaces, so it never matches across two fields).
    pub fn search_key(&self) -> String {
        [
            Some(self.first_name.as_str()),
            self.middle_name.as_deref(),
            Some(self.last_name.as_str()),
            Some(self.email.as_str()),
            Some(self.login.as_str()),
            Some(self.external_id.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
    }
}

/// The source of users whose import names none.
pub const DEFAULT_SOURCE: &str = "default";

const NAME_LEN: usize = 100;
const TEXT_LEN: usize = 255;
const KEY_LEN: usize = 255;
const SOURCE_LEN: usize = 100;
const ATTRIBUTES_MAX: usize = 200;
const CUSTOM_INFO_MAX_BYTES: usize = 64 * 1024;

/// How the password changes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PasswordChange {
    /// A plain password: kept as it is when the stored hash already matches it.
    Plain(String),
    /// A plain password hashed ahead of time (see [`UserChanges::prepare_password`]).
    Prepared(PreparedPassword),
    Hashed(PasswordHashString),
}

/// A plain password's work done outside any transaction: a fresh hash, and which of the
/// stored hashes it could meet already match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedPassword {
    fresh: String,
    matching: Vec<String>,
}

impl PreparedPassword {
    /// Hashes `password` anew and checks it against `stored` hashes. Slow by design (Argon2):
    /// run it on a blocking thread.
    pub fn new(password: &str, stored: &[String]) -> Result<Self, Problem> {
        Ok(Self {
            fresh: PasswordHashString::hash(password)?.as_str().to_owned(),
            matching: stored
                .iter()
                .filter(|hash| PasswordHashString::verify(hash, password))
                .cloned()
                .collect(),
        })
    }
}

/// The checked changes of one import.
#[derive(Debug, Clone)]
pub struct UserChanges {
    pub source: String,
    pub external_id: String,
    pub email: Email,
    login: Patch<String>,
    first_name: String,
    middle_name: Patch<String>,
    last_name: String,
    title: Patch<String>,
    password: Patch<PasswordChange>,
    birth_date: Patch<NaiveDate>,
    gender: Patch<Gender>,
    active: Patch<bool>,
    phone: Patch<String>,
    city: Patch<String>,
    department: Patch<String>,
    position: Patch<String>,
    company: Patch<String>,
    work_contact: Patch<String>,
    structure_uid: Patch<String>,
    language: Patch<Language>,
    facebook_id: Patch<String>,
    google_id: Patch<String>,
    employment_start_date: Patch<NaiveDate>,
    employment_end_date: Patch<NaiveDate>,
    position_assigned_date: Patch<NaiveDate>,
    tags: Patch<Vec<String>>,
    attributes: Patch<Vec<Attribute>>,
    custom_info: Patch<CustomInfo>,
    /// Where the input sits, e.g. `user`; field paths are `{prefix}.{field}`.
    prefix: String,
}

impl UserChanges {
    /// Checks every field of `raw`; all problems are reported together, each under
    /// `{prefix}.{field}`.
    pub fn parse(raw: RawUser, prefix: &str) -> Result<Self, Vec<FieldError>> {
        let mut problems = Problems::default();
        let path = |field: &str| format!("{prefix}.{field}");
        let text = |problems: &mut Problems, field: &str, patch: Patch<String>, max: usize| {
            patch
                .check(problems, path(field), |v| optional_text(&v, max))
                .flatten()
        };
        let date = |problems: &mut Problems, field: &str, patch: Patch<String>| {
            patch.check(problems, path(field), |v| parse_date(&v))
        };

        let external_id =
            problems.check(path("externalId"), required_text(&raw.external_id, KEY_LEN));
        let source = match raw.source {
            Some(source) => problems.check(path("source"), required_text(&source, SOURCE_LEN)),
            None => Some(DEFAULT_SOURCE.to_owned()),
        };
        let email = problems.check(path("email"), Email::parse(&raw.email));
        let login = text(&mut problems, "login", raw.login, Email::MAX_LEN);
        let first_name =
            problems.check(path("firstName"), required_text(&raw.first_name, NAME_LEN));
        let last_name = problems.check(path("lastName"), required_text(&raw.last_name, NAME_LEN));

        let password = match (raw.password, raw.password_hash) {
            (Patch::Keep, Patch::Keep) => Patch::Keep,
            (Patch::Keep | Patch::Clear, Patch::Clear) | (Patch::Clear, Patch::Keep) => {
                Patch::Clear
            }
            (Patch::Set(password), Patch::Keep | Patch::Clear) => problems
                .check(path("password"), PasswordHashString::check_plain(&password))
                .map_or(Patch::Keep, |()| {
                    Patch::Set(PasswordChange::Plain(password))
                }),
            (Patch::Keep | Patch::Clear, Patch::Set(hash)) => problems
                .check(path("passwordHash"), PasswordHashString::parse(&hash))
                .map_or(Patch::Keep, |hash| Patch::Set(PasswordChange::Hashed(hash))),
            (Patch::Set(_), Patch::Set(_)) => {
                problems.add(
                    path("passwordHash"),
                    Problem::new(
                        "CONFLICTING_FIELDS",
                        "give either password or passwordHash, not both",
                    ),
                );
                Patch::Keep
            }
        };

        let phone = raw
            .phone
            .map(|p| (!p.trim().is_empty()).then_some(p))
            .flatten()
            .check(&mut problems, path("phone"), |p| {
                Phone::parse(&p).map(|p| p.as_str().to_owned())
            });

        let birth_date = date(&mut problems, "birthDate", raw.birth_date);
        let employment_start_date = date(
            &mut problems,
            "employmentStartDate",
            raw.employment_start_date,
        );
        let employment_end_date = date(&mut problems, "employmentEndDate", raw.employment_end_date);
        let position_assigned_date = date(
            &mut problems,
            "positionAssignedDate",
            raw.position_assigned_date,
        );

        let tags = match raw.tags {
            Patch::Set(tags) => {
                Tags::check(&tags, &path("tags"), &mut problems).map_or(Patch::Keep, Patch::Set)
            }
            Patch::Clear => Patch::Clear,
            Patch::Keep => Patch::Keep,
        };

        let attributes = match raw.attributes {
            Patch::Set(attributes) => {
                parse_attributes(attributes, &format!("{prefix}.attributes"), &mut problems)
                    .map_or(Patch::Keep, Patch::Set)
            }
            Patch::Clear => Patch::Clear,
            Patch::Keep => Patch::Keep,
        };

        let custom_info = raw
            .custom_info
            .check(&mut problems, path("customInfo"), |info| {
                let size = serde_json::to_vec(&info).map_or(usize::MAX, |bytes| bytes.len());
                if size > CUSTOM_INFO_MAX_BYTES {
                    Err(Problem::new(
                        "TOO_LONG",
                        format!("must be at most {CUSTOM_INFO_MAX_BYTES} bytes of JSON"),
                    ))
                } else {
                    check_json_characters(&info).map(|()| info)
                }
            });
        let custom_info = match custom_info {
            Patch::Set(Json::Null) => Patch::Clear,
            other => other.map(CustomInfo),
        };

        let middle_name = text(&mut problems, "middleName", raw.middle_name, NAME_LEN);
        let title = text(&mut problems, "title", raw.title, NAME_LEN);
        let city = text(&mut problems, "city", raw.city, TEXT_LEN);
        let department = text(&mut problems, "department", raw.department, TEXT_LEN);
        let position = text(&mut problems, "position", raw.position, TEXT_LEN);
        let company = text(&mut problems, "company", raw.company, TEXT_LEN);
        let work_contact = text(&mut problems, "workContact", raw.work_contact, TEXT_LEN);
        let structure_uid = text(&mut problems, "structureUid", raw.structure_uid, TEXT_LEN);
        let facebook_id = text(&mut problems, "facebookId", raw.facebook_id, TEXT_LEN);
        let google_id = text(&mut problems, "googleId", raw.google_id, TEXT_LEN);
        // Every field is checked above, so a missing required one still lets the others be
        // reported.
        let (Some(source), Some(external_id), Some(email), Some(first_name), Some(last_name)) =
            (source, external_id, email, first_name, last_name)
        else {
            return Err(problems.into_field_errors());
        };
        let changes = Self {
            source,
            external_id,
            email,
            first_name,
            last_name,
            login,
            middle_name,
            title,
            password,
            birth_date,
            gender: raw.gender,
            active: raw.active,
            phone,
            city,
            department,
            position,
            company,
            work_contact,
            structure_uid,
            language: raw.language,
            facebook_id,
            google_id,
            employment_start_date,
            employment_end_date,
            position_assigned_date,
            tags,
            attributes,
            custom_info,
            prefix: prefix.to_owned(),
        };
        if problems.is_empty() {
            Ok(changes)
        } else {
            Err(problems.into_field_errors())
        }
    }

    /// The user after these changes, given the user before them (`None` when new).
    ///
    /// Rules that span fields (the end of employment not before its start, a birth date not
    /// in the future) are checked on the result, as a field kept from before counts too.
    pub fn apply(
        &self,
        before: Option<&Profile>,
        replace: bool,
        today: NaiveDate,
    ) -> Result<Profile, Vec<FieldError>> {
        let keep = |f: fn(&Profile) -> Option<String>| before.and_then(f);
        let email = self.email.as_str().to_owned();
        // A login that was only ever the default follows the email.
        let login = match (&self.login, before) {
            (Patch::Set(login), _) => login.clone(),
            (Patch::Keep, Some(before)) if !replace && before.login != before.email => {
                before.login.clone()
            }
            _ => email.clone(),
        };
        let password_hash = match &self.password {
            Patch::Set(PasswordChange::Prepared(prepared)) => {
                match before.and_then(|b| b.password_hash.as_ref()) {
                    Some(stored) if prepared.matching.contains(stored) => Some(stored.clone()),
                    _ => Some(prepared.fresh.clone()),
                }
            }
            Patch::Set(PasswordChange::Plain(password)) => {
                match before.and_then(|b| b.password_hash.as_deref()) {
                    Some(stored) if PasswordHashString::verify(stored, password) => {
                        Some(stored.to_owned())
                    }
                    _ => Some(
                        PasswordHashString::hash(password)
                            .map_err(|problem| {
                                vec![FieldError::new(
                                    self.path("password"),
                                    problem.code,
                                    problem.message,
                                )]
                            })?
                            .as_str()
                            .to_owned(),
                    ),
                }
            }
            Patch::Set(PasswordChange::Hashed(hash)) => Some(hash.as_str().to_owned()),
            Patch::Clear => None,
            // A password is a credential, not profile data: `replace` never drops it.
            Patch::Keep => before.and_then(|b| b.password_hash.clone()),
        };
        let active = match self.active {
            Patch::Set(active) => active,
            Patch::Keep if !replace => before.is_none_or(|b| b.active),
            _ => true,
        };
        let profile = Profile {
            source: self.source.clone(),
            external_id: self.external_id.clone(),
            email,
            login,
            first_name: self.first_name.clone(),
            middle_name: self
                .middle_name
                .merge(keep(|b| b.middle_name.clone()), replace),
            last_name: self.last_name.clone(),
            title: self.title.merge(keep(|b| b.title.clone()), replace),
            password_hash,
            birth_date: self
                .birth_date
                .merge(before.and_then(|b| b.birth_date), replace),
            gender: self.gender.merge(before.and_then(|b| b.gender), replace),
            active,
            phone: self.phone.merge(keep(|b| b.phone.clone()), replace),
            city: self.city.merge(keep(|b| b.city.clone()), replace),
            department: self
                .department
                .merge(keep(|b| b.department.clone()), replace),
            position: self.position.merge(keep(|b| b.position.clone()), replace),
            company: self.company.merge(keep(|b| b.company.clone()), replace),
            work_contact: self
                .work_contact
                .merge(keep(|b| b.work_contact.clone()), replace),
            structure_uid: self
                .structure_uid
                .merge(keep(|b| b.structure_uid.clone()), replace),
            language: self
                .language
                .merge(before.and_then(|b| b.language), replace),
            facebook_id: self
                .facebook_id
                .merge(keep(|b| b.facebook_id.clone()), replace),
            google_id: self.google_id.merge(keep(|b| b.google_id.clone()), replace),
            employment_start_date: self
                .employment_start_date
                .merge(before.and_then(|b| b.employment_start_date), replace),
            employment_end_date: self
                .employment_end_date
                .merge(before.and_then(|b| b.employment_end_date), replace),
            position_assigned_date: self
                .position_assigned_date
                .merge(before.and_then(|b| b.position_assigned_date), replace),
            tags: self
                .tags
                .merge(before.map(|b| b.tags.clone()), replace)
                .unwrap_or_default(),
            attributes: self
                .attributes
                .merge(before.map(|b| b.attributes.clone()), replace)
                .unwrap_or_default(),
            custom_info: self
                .custom_info
                .merge(before.and_then(|b| b.custom_info.clone()), replace),
        };

        let mut problems = Problems::default();
        if profile.birth_date.is_some_and(|born| born > today) {
            problems.add(
                self.path("birthDate"),
                Problem::new("IN_FUTURE", "must not be in the future"),
            );
        }
        if let (Some(start), Some(end)) =
            (profile.employment_start_date, profile.employment_end_date)
            && end < start
        {
            problems.add(
                self.path("employmentEndDate"),
                Problem::new(
                    "BEFORE_START",
                    format!("must not be before the employment start date {start}"),
                ),
            );
        }
        if problems.is_empty() {
            Ok(profile)
        } else {
            Err(problems.into_field_errors())
        }
    }

    /// The plain password sent, if any, for [`PreparedPassword::new`].
    pub fn plain_password(&self) -> Option<&str> {
        match &self.password {
            Patch::Set(PasswordChange::Plain(password)) => Some(password),
            _ => None,
        }
    }

    /// Uses a password hashed and verified ahead of time, so that no hashing happens while
    /// a transaction is open.
    pub fn prepare_password(&mut self, prepared: PreparedPassword) {
        if self.plain_password().is_some() {
            self.password = Patch::Set(PasswordChange::Prepared(prepared));
        }
    }

    /// The login sent, if any.
    pub fn sent_login(&self) -> Option<&str> {
        match &self.login {
            Patch::Set(login) => Some(login),
            _ => None,
        }
    }

    /// Whether the import sends tags (a value or `null`).
    pub fn sends_tags(&self) -> bool {
        !self.tags.is_keep()
    }

    /// The input path of one field, e.g. `user.email`.
    pub fn path(&self, field: &str) -> String {
        format!("{}.{field}", self.prefix)
    }
}

/// Checks one attribute, naming problems `at(field)`. `None` when its name was refused or
/// already in `seen`; else its name and the attribute, `None` for a `null` value (or a
/// refused one, recorded in `problems`).
pub fn check_attribute(
    attribute: &RawAttribute,
    seen: &mut HashSet<String>,
    problems: &mut Problems,
    at: impl Fn(&str) -> String,
) -> Option<(String, Option<Attribute>)> {
    let name = problems.check(at("name"), required_text(&attribute.name, NAME_LEN));
    let class = problems
        .check(
            at("class"),
            attribute
                .class
                .as_deref()
                .map_or(Ok(None), |c| optional_text(c, NAME_LEN)),
        )
        .flatten();
    let value = attribute
        .value
        .as_deref()
        .and_then(|v| problems.check(at("value"), attribute.kind.check(v)));
    let name = name?;
    if !seen.insert(name.clone()) {
        problems.add(
            at("name"),
            Problem::new("DUPLICATE", format!("attribute {name:?} is given twice")),
        );
        return None;
    }
    let attribute = value.map(|value| Attribute {
        name: name.clone(),
        value,
        kind: attribute.kind,
        class,
    });
    Some((name, attribute))
}

fn parse_attributes(
    attributes: Vec<RawAttribute>,
    path: &str,
    problems: &mut Problems,
) -> Option<Vec<Attribute>> {
    let problems_before = problems.len();
    if attributes.len() > ATTRIBUTES_MAX {
        problems.add(
            path,
            Problem::new("TOO_MANY", format!("at most {ATTRIBUTES_MAX} attributes")),
        );
        return None;
    }
    let mut parsed: Vec<Attribute> = Vec::with_capacity(attributes.len());
    let mut names = HashSet::with_capacity(attributes.len());
    for (index, attribute) in attributes.iter().enumerate() {
        let at = |field: &str| format!("{path}[{index}].{field}");
        // A `null` value leaves the attribute out.
        if let Some((_, Some(attribute))) = check_attribute(attribute, &mut names, problems, at) {
            parsed.push(attribute);
        }
    }
    if problems.len() > problems_before {
        return None;
    }
    parsed.sort_by(|a, b| a.name.cmp(&b.name));
    Some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawUser {
        RawUser {
            external_id: "cl1".into(),
            email: "Ann@Example.com".into(),
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            ..RawUser::default()
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().filter_map(|e| e.field.as_deref()).collect()
    }

    #[test]
    fn a_new_user_gets_the_defaults() {
        let changes = UserChanges::parse(raw(), "user").unwrap();
        let profile = changes.apply(None, false, today()).unwrap();
        assert_eq!(profile.source, DEFAULT_SOURCE);
        assert_eq!(
            profile.login, "Ann@Example.com",
            "login defaults to the email"
        );
        assert_eq!(profile.email_key(), "ann@example.com");
        assert!(profile.active);
        assert!(profile.tags.is_empty() && profile.password_hash.is_none());
    }

    #[test]
    fn every_problem_is_named_with_its_path() {
        let bad = RawUser {
            external_id: " ".into(),
            email: "nope".into(),
            phone: Patch::Set("123".into()),
            birth_date: Patch::Set("31.02.1988".into()),
            tags: Patch::Set(vec!["ok".into(), "".into()]),
            attributes: Patch::Set(vec![RawAttribute {
                name: "n".into(),
                value: Some("x".into()),
                kind: AttributeType::Number,
                class: None,
            }]),
            ..raw()
        };
        let errors = UserChanges::parse(bad, "users[3]").unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "users[3].externalId",
                "users[3].email",
                "users[3].phone",
                "users[3].birthDate",
                "users[3].tags[1]",
                "users[3].attributes[0].value",
            ]
        );
    }

    #[test]
    fn keep_clear_and_replace() {
        let first = RawUser {
            city: Patch::Set("Kyiv".into()),
            department: Patch::Set("Sales".into()),
            tags: Patch::Set(vec!["B".into(), "a".into()]),
            active: Patch::Set(false),
            ..raw()
        };
        let before = UserChanges::parse(first, "user")
            .unwrap()
            .apply(None, false, today())
            .unwrap();
        assert_eq!(before.tags, ["a", "b"], "sorted, lower-cased");

        let omitted = UserChanges::parse(raw(), "user").unwrap();
        assert_eq!(
            omitted.apply(Some(&before), false, today()).unwrap(),
            before
        );

        let cleared = UserChanges::parse(
            RawUser {
                city: Patch::Clear,
                department: Patch::Set("   ".into()),
                ..raw()
            },
            "user",
        )
        .unwrap()
        .apply(Some(&before), false, today())
        .unwrap();
        assert_eq!((cleared.city, cleared.department), (None, None));
        assert_eq!(cleared.tags, before.tags);

        let replaced = omitted.apply(Some(&before), true, today()).unwrap();
        assert_eq!(replaced.city, None);
        assert!(replaced.tags.is_empty());
        assert!(replaced.active, "replace resets active to its default");
    }

    #[test]
    fn rules_across_fields_see_kept_values() {
        let before = UserChanges::parse(
            RawUser {
                employment_start_date: Patch::Set("2020-05-01".into()),
                ..raw()
            },
            "user",
        )
        .unwrap()
        .apply(None, false, today())
        .unwrap();
        let ends_early = UserChanges::parse(
            RawUser {
                employment_end_date: Patch::Set("01.04.2020".into()),
                birth_date: Patch::Set("2026-11-24".into()),
                ..raw()
            },
            "user",
        )
        .unwrap()
        .apply(Some(&before), false, today())
        .unwrap_err();
        assert_eq!(
            fields(&ends_early),
            ["user.birthDate", "user.employmentEndDate"]
        );
    }
}
