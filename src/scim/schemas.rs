//! The attributes Roster serves over SCIM, once: the discovery documents (`Schemas`,
//! `ResourceTypes`, `ServiceProviderConfig`) are made from them, and every request is
//! checked against them (names compared case-insensitively, as RFC 7643 §2.1 says).

use serde_json::{Value as Json, json};

use super::{CORE_USER, ENTERPRISE_USER, GROUP, ROSTER_USER};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Boolean,
    DateTime,
    Reference,
    Complex,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Boolean => "boolean",
            Self::DateTime => "dateTime",
            Self::Reference => "reference",
            Self::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    WriteOnly,
}

/// One attribute of a schema, or a sub-attribute of a complex one.
#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub kind: Kind,
    pub multi: bool,
    pub required: bool,
    pub mutability: Mutability,
    pub case_exact: bool,
    pub unique: bool,
    pub canonical: &'static [&'static str],
    pub description: &'static str,
    pub sub: &'static [Attr],
}

impl Attr {
    const fn text(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind: Kind::String,
            multi: false,
            required: false,
            mutability: Mutability::ReadWrite,
            case_exact: false,
            unique: false,
            canonical: &[],
            description,
            sub: &[],
        }
    }

    const fn of(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    const fn complex(mut self, sub: &'static [Attr]) -> Self {
        self.kind = Kind::Complex;
        self.sub = sub;
        self
    }

    const fn multi(mut self) -> Self {
        self.multi = true;
        self
    }

    const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    const fn read_only(mut self) -> Self {
        self.mutability = Mutability::ReadOnly;
        self
    }

    const fn write_only(mut self) -> Self {
        self.mutability = Mutability::WriteOnly;
        self
    }

    const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }

    const fn unique(mut self) -> Self {
        self.unique = true;
        self
    }

    const fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical = values;
        self
    }

    /// The sub-attribute of this name, compared case-insensitively.
    pub fn sub_attr(&self, name: &str) -> Option<&'static Attr> {
        // `sub` is `'static`, so the reference outlives `self`.
        let sub: &'static [Attr] = self.sub;
        sub.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }

    fn document(&self) -> Json {
        let mut doc = json!({
            "name": self.name,
            "type": self.kind.as_str(),
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": if self.mutability == Mutability::WriteOnly { "never" } else { "default" },
            "uniqueness": if self.unique { "server" } else { "none" },
        });
        if !self.canonical.is_empty() {
            doc["canonicalValues"] = json!(self.canonical);
        }
        if self.kind == Kind::Complex {
            doc["subAttributes"] = Json::Array(self.sub.iter().map(Attr::document).collect());
        }
        if self.kind == Kind::Reference {
            doc["referenceTypes"] = json!(["User"]);
        }
        doc
    }
}

const TYPED_VALUE: [Attr; 3] = [
    Attr::text("value", "The value.").required(),
    Attr::text(
        "type",
        "A label: Roster keeps one value, whatever its type.",
    )
    .canonical(&["work", "home", "mobile", "other"]),
    Attr::text("primary", "Whether this is the value Roster keeps.").of(Kind::Boolean),
];
const EMAIL: [Attr; 3] = TYPED_VALUE;
const PHONE: [Attr; 3] = [
    Attr::text("value", "E.164, e.g. +380971234567 (or tel:+380971234567).").required(),
    Attr::text(
        "type",
        "Roster keeps one value, a work one: any other type is read as work.",
    )
    .canonical(&["work"]),
    Attr::text("primary", "Whether this is the value Roster keeps.").of(Kind::Boolean),
];
const ADDRESS: [Attr; 3] = [
    Attr::text("locality", "The city: Roster's `city`."),
    Attr::text(
        "type",
        "Roster keeps one address, a work one: any other type is read as work.",
    )
    .canonical(&["work"]),
    Attr::text("primary", "Whether this is the address Roster keeps.").of(Kind::Boolean),
];
const NAME: [Attr; 3] = [
    Attr::text("givenName", "Roster's `firstName`.").required(),
    Attr::text("familyName", "Roster's `lastName`.").required(),
    Attr::text("middleName", "Roster's `middleName`."),
];

const USER_GROUP: [Attr; 3] = [
    Attr::text("value", "The group's id."),
    Attr::text("$ref", "The group's URI.").of(Kind::Reference),
    Attr::text("display", "The group's name."),
];

/// The core `User` schema as Roster keeps it (RFC 7643 §4.1, the attributes Roster stores).
pub static USER: [Attr; 11] = [
    Attr::text(
        "userName",
        "Roster's `login`; unique in the tenant, case-insensitively.",
    )
    .required()
    .unique(),
    Attr::text("name", "The person's names.")
        .complex(&NAME)
        .required(),
    Attr::text("title", "Roster's `title`."),
    Attr::text(
        "preferredLanguage",
        "Roster's `language`; a region (en-US) is accepted and dropped.",
    )
    .canonical(LANGUAGES),
    Attr::text(
        "locale",
        "Read as `preferredLanguage` when that is not sent; never returned.",
    )
    .write_only(),
    Attr::text(
        "active",
        "false: the user is deactivated (`DELETE` does the same).",
    )
    .of(Kind::Boolean),
    Attr::text("password", "Stored as an Argon2id hash, never returned.").write_only(),
    Attr::text(
        "emails",
        "The primary (else the work, else the first) is Roster's `email`.",
    )
    .complex(&EMAIL)
    .multi()
    .required(),
    Attr::text(
        "phoneNumbers",
        "The primary (else the last work or mobile) is Roster's `phone`, E.164.",
    )
    .complex(&PHONE)
    .multi(),
    Attr::text(
        "addresses",
        "The locality of the primary (else the work) address is Roster's `city`.",
    )
    .complex(&ADDRESS)
    .multi(),
    Attr::text(
        "groups",
        "The groups whose tag the user carries; change them through Groups.",
    )
    .complex(&USER_GROUP)
    .multi()
    .read_only(),
];

const MANAGER: [Attr; 2] = [
    Attr::text("value", "The manager's id: the user's `MANAGER` approver.").case_exact(),
    Attr::text(
        "$ref",
        "The manager's URI; when sent without a value, its last segment is the id.",
    )
    .of(Kind::Reference),
];

/// The languages Roster knows, as `preferredLanguage` names them.
pub const LANGUAGES: &[&str] = &["en", "uk", "de", "es", "et", "tr", "ru", "nl", "fr"];

/// The enterprise extension (RFC 7643 §4.3), as far as Roster keeps it.
pub static ENTERPRISE: [Attr; 4] = [
    Attr::text("department", "Roster's `department`."),
    Attr::text("organization", "Roster's `company`."),
    Attr::text(
        "employeeNumber",
        "Kept as the user's attribute `employeeNumber`.",
    ),
    Attr::text(
        "manager",
        "The user's `MANAGER` approver: active, in the tenant, no cycle.",
    )
    .complex(&MANAGER),
];

const ROSTER_ATTRIBUTE: [Attr; 4] = [
    Attr::text("name", "The attribute's name.").required(),
    Attr::text("value", "Its value, checked against its type."),
    Attr::text("type", "STRING (the default), NUMBER, BOOLEAN or DATE.")
        .canonical(&["STRING", "NUMBER", "BOOLEAN", "DATE"]),
    Attr::text("class", "A class the attribute belongs to."),
];

/// Roster keeps dates, which SCIM has no type for: strings, YYYY-MM-DD (a date-time's date
/// part is taken too).
const DATE: &str = "A date: YYYY-MM-DD (of a date-time, its date is taken).";

/// Roster's own extension: the fields no standard schema has.
pub static ROSTER: [Attr; 12] = [
    Attr::text(
        "tags",
        "Lower-cased; they assign learning tracks. Left out of a PUT with the whole extension, they stay.",
    )
    .multi(),
    Attr::text("attributes", "Typed attributes (seed 004), employeeNumber apart.")
        .complex(&ROSTER_ATTRIBUTE)
        .multi(),
    Attr::text("structureUid", "The unit of the organisation the user belongs to."),
    Attr::text("position", "The position held."),
    Attr::text("workContact", "How to reach the user at work."),
    Attr::text("birthDate", DATE),
    Attr::text("gender", "MALE, FEMALE or OTHER.").canonical(&["MALE", "FEMALE", "OTHER"]),
    Attr::text("employmentStartDate", DATE),
    Attr::text("employmentEndDate", "A date, not before the start."),
    Attr::text("positionAssignedDate", DATE),
    Attr::text(
        "customInfo",
        "Any JSON, as its text; text that is not JSON is kept as a JSON string. A stored string whose text would read as other JSON (42) is shown quoted, as its JSON text, so that it reads back as a string.",
    ),
    Attr::text("source", "The namespace of externalId: the configured SCIM source for users created here.")
        .read_only()
        .case_exact(),
];

const MEMBER: [Attr; 3] = [
    Attr::text("value", "The member's user id.").case_exact(),
    Attr::text("$ref", "The member's URI.").of(Kind::Reference),
    Attr::text("type", "Members are users.").canonical(&["User"]),
];

/// The core `Group` schema: a group is a tag, its members the users carrying it.
pub static GROUP_ATTRS: [Attr; 2] = [
    Attr::text(
        "displayName",
        "The group's name; lower-cased, it is the tag its members carry (at most 100 characters).",
    )
    .required()
    .unique(),
    Attr::text("members", "The users carrying the group's tag.")
        .complex(&MEMBER)
        .multi(),
];

/// Attributes RFC 7643 defines that Roster does not keep: identity providers send them,
/// and they are accepted and dropped rather than refused (they are not in `Schemas`).
pub const DROPPED_USER: &[&str] = &[
    "displayName",
    "nickName",
    "profileUrl",
    "userType",
    "timezone",
    "ims",
    "photos",
    "entitlements",
    "roles",
    "x509Certificates",
];
pub const DROPPED_SUB: &[&str] = &[
    "formatted",
    "honorificPrefix",
    "honorificSuffix",
    "display",
    "displayName",
    "streetAddress",
    "region",
    "postalCode",
    "country",
];
pub const DROPPED_ENTERPRISE: &[&str] = &["costCenter", "division"];

/// The attributes of an extension schema, by its URN (case-insensitive).
pub fn extension(urn: &str) -> Option<(&'static str, &'static [Attr])> {
    [
        (ENTERPRISE_USER, &ENTERPRISE[..]),
        (ROSTER_USER, &ROSTER[..]),
    ]
    .into_iter()
    .find(|(name, _)| name.eq_ignore_ascii_case(urn))
}

/// An attribute of `attrs` by name, case-insensitively.
pub fn find(attrs: &'static [Attr], name: &str) -> Option<&'static Attr> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

fn schema(id: &str, name: &str, description: &str, attrs: &[Attr], base: &str) -> Json {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.iter().map(Attr::document).collect::<Vec<_>>(),
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{id}") },
    })
}

/// Every schema, as `GET /Schemas` lists them.
pub fn schemas(base: &str) -> Vec<Json> {
    vec![
        schema(CORE_USER, "User", "A person of the tenant.", &USER, base),
        schema(
            ENTERPRISE_USER,
            "EnterpriseUser",
            "The enterprise extension, as far as Roster keeps it.",
            &ENTERPRISE,
            base,
        ),
        schema(
            ROSTER_USER,
            "RosterUser",
            "Roster's fields that no standard schema has.",
            &ROSTER,
            base,
        ),
        schema(
            GROUP,
            "Group",
            "A group: its members carry its name as a tag, which assigns learning tracks.",
            &GROUP_ATTRS,
            base,
        ),
    ]
}

pub fn resource_types(base: &str) -> Vec<Json> {
    vec![
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "A person of the tenant; DELETE deactivates.",
            "schema": CORE_USER,
            "schemaExtensions": [
                { "schema": ENTERPRISE_USER, "required": false },
                { "schema": ROSTER_USER, "required": false },
            ],
            "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User") },
        }),
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "A group: its members carry its name as a tag.",
            "schema": GROUP,
            "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group") },
        }),
    ]
}

/// What this provider supports, and nothing it does not.
pub fn service_provider_config(
    base: &str,
    max_results: usize,
    max_operations: usize,
    max_payload: usize,
) -> Json {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": { "supported": true },
        "bulk": {
            "supported": true,
            "maxOperations": max_operations,
            "maxPayloadSize": max_payload,
        },
        "filter": { "supported": true, "maxResults": max_results },
        "changePassword": { "supported": true },
        "sort": { "supported": false },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A Roster JWT: `roster token --role admin --ttl 365d --sub okta`. \
                DELETE /Users/{id} deactivates the user, who keeps their learning history.",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}
