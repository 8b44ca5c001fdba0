//! CSV files as job input, and rows written back as CSV. No GraphQL here.
//!
//! A file's header names its columns, in this contract's names (those of the users export,
//! `attr:<name>` or `attr:<name>:<TYPE>` for an attribute) or in seed 001's (`uid`,
//! `secondname`, `is_active` 0/1, `user_field1`…), compared case-insensitively. A CSV job keeps each row as its cells
//! ([`Layout`] on the job says what they are); the worker reads them into the same
//! [`ImportRow`] a JSON job carries, so both go through the very same checks.
//!
//! An empty cell gives nothing: the field keeps its value (with `replace`, it is cleared,
//! as an omitted field is). Whatever else `UserImportInput` can say has a column too, so
//! that any JSON row can be written as a CSV row and read back the same: `attributes` and
//! `approvers` take the JSON list that field takes, `tags` a JSON list when a tag has a
//! comma, and `clear` names the fields the row clears (a `null` in JSON). Problems with a
//! cell (`gender` 3, a `customInfo` that is not JSON) fail the row, named by the file's own
//! column name. Every file is written with a `'` before a cell that a spreadsheet would run
//! as a formula, and read without it ([`formula`]).

mod formula;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};

use tokio::sync::mpsc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::approvers::RawLinks;
use crate::error::{AppError, FieldError};
use crate::users::domain::AttributeType;
use crate::users::import::ImportRow;
use crate::users::profile::{Gender, Language, Patch, RawAttribute, RawUser};

pub use formula::write_record;

/// Most rows one CSV file may carry.
pub const MAX_ROWS: usize = 1_000_000;
/// Bytes of a file read to find its separator: its header line should fit.
pub const HEADER_MAX: usize = 64 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What a CSV file's header says, kept with its job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// The column names as the file spells them.
    pub names: Vec<String>,
    /// `,`, `;` or a tab.
    pub delimiter: char,
    /// The file began with a UTF-8 byte order mark (as Excel writes it).
    pub bom: bool,
}

/// The user fields a column can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    ExternalId,
    Source,
    Email,
    Login,
    FirstName,
    MiddleName,
    LastName,
    Title,
    Password,
    PasswordHash,
    BirthDate,
    Gender,
    Active,
    Phone,
    City,
    Department,
    Position,
    Company,
    WorkContact,
    StructureUid,
    Language,
    FacebookId,
    GoogleId,
    EmploymentStartDate,
    EmploymentEndDate,
    PositionAssignedDate,
    Tags,
    Attributes,
    CustomInfo,
    Approvers,
    ManagerExternalId,
}

impl Field {
    /// Every field with its name in the contract (also its field path in errors) and, when
    /// seed 001 spells it otherwise, that name.
    const ALL: [(Self, &'static str, Option<&'static str>); 31] = [
        (Self::ExternalId, "externalId", Some("uid")),
        (Self::Source, "source", None),
        (Self::Email, "email", None),
        (Self::Login, "login", None),
        (Self::FirstName, "firstName", None),
        (Self::MiddleName, "middleName", Some("patronymic")),
        (Self::LastName, "lastName", Some("secondname")),
        (Self::Title, "title", None),
        (Self::Password, "password", None),
        (Self::PasswordHash, "passwordHash", None),
        (Self::BirthDate, "birthDate", Some("birth_date")),
        (Self::Gender, "gender", None),
        (Self::Active, "active", Some("is_active")),
        (Self::Phone, "phone", None),
        (Self::City, "city", None),
        (Self::Department, "department", None),
        (Self::Position, "position", None),
        (Self::Company, "company", None),
        (Self::WorkContact, "workContact", Some("work_contact")),
        (Self::StructureUid, "structureUid", Some("structure_uid")),
        (Self::Language, "language", None),
        (Self::FacebookId, "facebookId", Some("facebook_id")),
        (Self::GoogleId, "googleId", Some("google_id")),
        (
            Self::EmploymentStartDate,
            "employmentStartDate",
            Some("date_of_employment"),
        ),
        (Self::EmploymentEndDate, "employmentEndDate", None),
        (
            Self::PositionAssignedDate,
            "positionAssignedDate",
            Some("date_of_assignment_current_position"),
        ),
        (Self::Tags, "tags", None),
        (Self::Attributes, "attributes", None),
        (Self::CustomInfo, "customInfo", None),
        (Self::Approvers, "approvers", None),
        (
            Self::ManagerExternalId,
            "managerExternalId",
            Some("manager_uid"),
        ),
    ];

    /// The fields a file must have a column for.
    const REQUIRED: [Self; 4] = [
        Self::ExternalId,
        Self::Email,
        Self::FirstName,
        Self::LastName,
    ];

    fn named(name: &str) -> Option<Self> {
        Self::ALL.iter().find_map(|(field, ours, seed)| {
            (ours.eq_ignore_ascii_case(name) || seed.is_some_and(|s| s.eq_ignore_ascii_case(name)))
                .then_some(*field)
        })
    }

    /// A password or a password hash: written, never returned.
    fn is_secret(self) -> bool {
        matches!(self, Self::Password | Self::PasswordHash)
    }

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(field, _, _)| *field == self)
            .map_or("", |(_, name, _)| name)
    }

    /// How a missing column is named to people: both spellings.
    fn spellings(self) -> String {
        let (_, ours, seed) = Self::ALL
            .iter()
            .find(|(field, _, _)| *field == self)
            .copied()
            .unwrap_or((self, "", None));
        match seed {
            Some(seed) => format!("{ours} (or {seed})"),
            None => ours.to_owned(),
        }
    }
}

/// What one column of a file gives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    Field(Field),
    /// An attribute of this name and type: `attr:<name>` (`STRING`), `attr:<name>:<TYPE>`
    /// ([`attribute_column`]), or seed 001's `user_field1`…`user_field5`.
    Attribute(String, AttributeType),
    /// `clear`: the fields the row clears, by name (as `null` does in `UserImportInput`).
    Clear,
    /// Columns of the users export that are not input (`id`, `createdAt`, `updatedAt`),
    /// the `errors` column of a failed-rows download sent back fixed, and columns without
    /// a name (the trailing separators some spreadsheets write).
    Ignored,
    /// Reported once as a job warning.
    Unknown,
}

impl Column {
    fn of(name: &str) -> Self {
        let name = name.trim();
        if let Some(field) = Field::named(name) {
            return Self::Field(field);
        }
        let lower = name.to_ascii_lowercase();
        if let Some(attribute) = lower.strip_prefix("attr:") {
            let attribute = name[name.len() - attribute.len()..].trim();
            let (attribute, kind) = match attribute.rsplit_once(':') {
                Some((named, kind)) => match AttributeType::from_stored(&kind.to_ascii_uppercase())
                {
                    Some(kind) => (named, kind),
                    None => (attribute, AttributeType::String),
                },
                None => (attribute, AttributeType::String),
            };
            return if attribute.is_empty() {
                Self::Unknown
            } else {
                Self::Attribute(attribute.to_owned(), kind)
            };
        }
        if let Some(n) = lower.strip_prefix("user_field")
            && matches!(n, "1" | "2" | "3" | "4" | "5")
        {
            return Self::Attribute(lower, AttributeType::String);
        }
        if lower == "clear" {
            return Self::Clear;
        }
        if matches!(
            lower.as_str(),
            "" | "id" | "createdat" | "updatedat" | "errors"
        ) {
            return Self::Ignored;
        }
        Self::Unknown
    }
}

/// A file's columns, understood.
#[derive(Debug, Clone)]
pub struct Columns {
    layout: Layout,
    columns: Vec<Column>,
}

/// What reading a row's cells noted, to report its problems by column.
#[derive(Debug, Default)]
pub struct Notes {
    /// Cells that could not be read (`gender` 3).
    problems: Vec<FieldError>,
    /// The column of each attribute of the row, in order (those of an `attributes` cell
    /// first).
    attribute_columns: Vec<usize>,
}

impl Columns {
    /// The columns of a header; a header without a required column, or with two columns
    /// for one field, is refused with every such problem named. Also answers the warnings
    /// the job keeps: the columns it does not know.
    pub fn new(layout: Layout) -> Result<(Self, Vec<String>), AppError> {
        let columns: Vec<Column> = layout.names.iter().map(|name| Column::of(name)).collect();
        let mut problems = Vec::new();
        let missing: Vec<String> = Field::REQUIRED
            .into_iter()
            .filter(|field| !columns.contains(&Column::Field(*field)))
            .map(Field::spellings)
            .collect();
        if !missing.is_empty() {
            problems.push(FieldError::new(
                "file",
                "MISSING_COLUMNS",
                format!(
                    "the header (line 1) lacks the required column{} {}; it has: {}",
                    if missing.len() == 1 { "" } else { "s" },
                    missing.join(", "),
                    shown(&layout.names)
                ),
            ));
        }
        // Two columns of one attribute clash whatever their types.
        let same = |a: &Column, b: &Column| match (a, b) {
            (Column::Attribute(a, _), Column::Attribute(b, _)) => a == b,
            _ => a == b,
        };
        for (i, column) in columns.iter().enumerate() {
            let first = columns.iter().position(|c| same(c, column));
            let counted = matches!(
                column,
                Column::Field(_) | Column::Attribute(..) | Column::Clear
            );
            if counted && first != Some(i) {
                let first = first.unwrap_or_default();
                problems.push(FieldError::new(
                    "file",
                    "DUPLICATE_COLUMN",
                    format!(
                        "the columns {:?} and {:?} give the same field; keep one",
                        layout.names[first], layout.names[i]
                    ),
                ));
            }
        }
        if !problems.is_empty() {
            return Err(AppError::invalid_fields(problems));
        }
        let unknown: Vec<String> = columns
            .iter()
            .zip(&layout.names)
            .filter(|(column, _)| **column == Column::Unknown)
            .map(|(_, name)| format!("{name:?}"))
            .collect();
        let warnings = if unknown.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "unknown columns, ignored in every row: {}",
                unknown.join(", ")
            )]
        };
        Ok((Self { layout, columns }, warnings))
    }

    /// The columns of a job's stored layout (which [`Columns::new`] accepted once).
    pub fn stored(json: &str) -> Result<Self, AppError> {
        let layout: Layout = serde_json::from_str(json).map_err(AppError::internal)?;
        Ok(Self::new(layout)?.0)
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether the file has a column of a secret (a password or a password hash).
    pub fn has_secrets(&self) -> bool {
        self.columns
            .iter()
            .any(|column| matches!(column, Column::Field(field) if field.is_secret()))
    }

    /// Blanks the cells of a row that hold a secret (a password or a password hash, which
    /// are never returned); answers the names of the columns blanked.
    pub fn withhold_secrets(&self, cells: &mut [String]) -> Vec<String> {
        let mut withheld = Vec::new();
        for ((column, name), cell) in self.columns.iter().zip(&self.layout.names).zip(cells) {
            if matches!(column, Column::Field(field) if field.is_secret())
                && !cell.trim().is_empty()
            {
                cell.clear();
                withheld.push(name.clone());
            }
        }
        withheld
    }

    /// `(source, externalId)` the row at `line` names, as its import will key the user,
    /// for a sync job to keep; a key it cannot keep refuses the file, naming the line and
    /// the column.
    fn sync_key(&self, cells: &[String], line: u64) -> Result<(String, String), AppError> {
        let column = |field: Field| {
            self.columns
                .iter()
                .position(|column| *column == Column::Field(field))
        };
        let cell = |field: Field| {
            column(field)
                .and_then(|i| cells.get(i))
                .map(|cell| cell.trim())
                .filter(|cell| !cell.is_empty())
        };
        let key = (
            cell(Field::Source)
                .unwrap_or(crate::users::profile::DEFAULT_SOURCE)
                .to_owned(),
            cell(Field::ExternalId).unwrap_or_default().to_owned(),
        );
        let problems: Vec<FieldError> = super::sync::key_problems(&key)
            .into_iter()
            .map(|(field, problem)| {
                let name = Field::named(field)
                    .and_then(column)
                    .map_or(field, |i| self.layout.names[i].trim());
                FieldError::new(
                    name,
                    problem.code,
                    format!("line {line}: {}", problem.message),
                )
            })
            .collect();
        if problems.is_empty() {
            Ok(key)
        } else {
            Err(AppError::invalid_fields(problems))
        }
    }

    /// Whether a row gives or clears approvers or a manager, and so has links to set in the
    /// second pass.
    pub fn sends_links(&self, cells: &[String]) -> bool {
        let links = |field: Field| matches!(field, Field::Approvers | Field::ManagerExternalId);
        self.cells(cells).any(|(column, cell, _)| match column {
            Column::Field(field) => links(*field),
            Column::Clear => cell
                .split(',')
                .filter_map(|name| Field::named(name.trim()))
                .any(links),
            _ => false,
        })
    }

    /// The columns with a non-empty cell in a row, with the cell and the column's index.
    fn cells<'a>(
        &'a self,
        cells: &'a [String],
    ) -> impl Iterator<Item = (&'a Column, &'a str, usize)> {
        self.columns
            .iter()
            .zip(cells)
            .enumerate()
            .filter(|(_, (_, cell))| !cell.trim().is_empty())
            .map(|(i, (column, cell))| (column, cell.as_str(), i))
    }

    /// The hashes of the keys a row's cells name ([`super::order`]), read as [`Self::read`]
    /// reads them.
    pub fn order_keys(&self, cells: &[String]) -> Vec<u64> {
        let mut user = RawUser::default();
        for (column, cell, _) in self.cells(cells) {
            match column {
                Column::Field(Field::ExternalId) => user.external_id = cell.to_owned(),
                Column::Field(Field::Source) => user.source = Some(cell.to_owned()),
                Column::Field(Field::Email) => user.email = cell.to_owned(),
                Column::Field(Field::Login) => user.login = Patch::Set(cell.to_owned()),
                _ => {}
            }
        }
        super::order::of_user(&user)
    }

    /// Reads a row's cells into an import row.
    pub fn read(&self, cells: &[String]) -> (ImportRow, Notes) {
        let mut user = RawUser::default();
        let mut links = RawLinks::default();
        let mut problems = Vec::new();
        // Attributes of an `attributes` cell come first, then those of `attr:` columns.
        let mut listed: Option<(Vec<RawAttribute>, usize)> = None;
        let mut attributes = Vec::new();
        let mut attribute_columns = Vec::new();
        let mut clear = None;
        if cells.len() > self.columns.len() {
            problems.push(FieldError {
                field: None,
                code: "TOO_MANY_CELLS".to_owned(),
                message: format!(
                    "the row has {} cells; the header has {} columns",
                    cells.len(),
                    self.columns.len()
                ),
            });
        }
        for (column, cell, i) in self.cells(cells) {
            let name = &self.layout.names[i];
            let text = || Patch::Set(cell.to_owned());
            let mut problem = |code: &str, message: &str| {
                problems.push(FieldError::new(name.trim(), code, message));
            };
            match column {
                Column::Attribute(attribute, kind) => {
                    attributes.push(RawAttribute {
                        name: attribute.clone(),
                        value: Some(cell.to_owned()),
                        kind: *kind,
                        class: None,
                    });
                    attribute_columns.push(i);
                }
                Column::Clear => clear = Some((cell, i)),
                Column::Ignored | Column::Unknown => {}
                Column::Field(field) => match field {
                    Field::ExternalId => user.external_id = cell.to_owned(),
                    Field::Source => user.source = Some(cell.to_owned()),
                    Field::Email => user.email = cell.to_owned(),
                    Field::Login => user.login = text(),
                    Field::FirstName => user.first_name = cell.to_owned(),
                    Field::MiddleName => user.middle_name = text(),
                    Field::LastName => user.last_name = cell.to_owned(),
                    Field::Title => user.title = text(),
                    Field::Password => user.password = text(),
                    Field::PasswordHash => user.password_hash = text(),
                    Field::BirthDate => user.birth_date = text(),
                    Field::Gender => match gender(cell) {
                        Some(gender) => user.gender = Patch::Set(gender),
                        None => problem(
                            "INVALID_VALUE",
                            "must be 0 (male), 1 (female), MALE, FEMALE or OTHER",
                        ),
                    },
                    Field::Active => match flag(cell) {
                        Some(active) => user.active = Patch::Set(active),
                        None => problem("INVALID_VALUE", "must be 1 or 0 (or true or false)"),
                    },
                    Field::Phone => user.phone = text(),
                    Field::City => user.city = text(),
                    Field::Department => user.department = text(),
                    Field::Position => user.position = text(),
                    Field::Company => user.company = text(),
                    Field::WorkContact => user.work_contact = text(),
                    Field::StructureUid => user.structure_uid = text(),
                    Field::Language => {
                        match Language::from_stored(&cell.trim().to_ascii_uppercase()) {
                            Some(language) => user.language = Patch::Set(language),
                            None => problem(
                                "INVALID_VALUE",
                                "must be one of EN, UK, DE, ES, ET, TR, RU, NL, FR",
                            ),
                        }
                    }
                    Field::FacebookId => user.facebook_id = text(),
                    Field::GoogleId => user.google_id = text(),
                    Field::EmploymentStartDate => user.employment_start_date = text(),
                    Field::EmploymentEndDate => user.employment_end_date = text(),
                    Field::PositionAssignedDate => user.position_assigned_date = text(),
                    Field::Tags => user.tags = Patch::Set(tags(cell)),
                    Field::Attributes => match json_list(cell, "attributes", ATTRIBUTES) {
                        Ok(list) => listed = Some((list, i)),
                        Err(message) => problem("INVALID_JSON", &message),
                    },
                    Field::Approvers => match json_list(cell, "approvers", APPROVERS) {
                        Ok(list) => links.approvers = Patch::Set(list),
                        Err(message) => problem("INVALID_JSON", &message),
                    },
                    Field::CustomInfo => match custom_info(cell) {
                        Some(info) => user.custom_info = Patch::Set(info),
                        None => problem(
                            "INVALID_JSON",
                            "must be a JSON value, or one encoded in base64",
                        ),
                    },
                    Field::ManagerExternalId => links.manager_external_id = text(),
                },
            }
        }
        if let Some((mut list, i)) = listed {
            attribute_columns.splice(0..0, std::iter::repeat_n(i, list.len()));
            list.append(&mut attributes);
            attributes = list;
            user.attributes = Patch::Set(attributes);
        } else if !attributes.is_empty() {
            user.attributes = Patch::Set(attributes);
        }
        if let Some((cell, i)) = clear {
            let name = self.layout.names[i].trim();
            for field in cell.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                let problem = match Field::named(field) {
                    None => Some((
                        "UNKNOWN_FIELD",
                        format!("{field:?} is not a field of UserImportInput"),
                    )),
                    Some(known) => clear_field(known, &mut user, &mut links)
                        .err()
                        .map(|message| ("CANNOT_CLEAR", format!("{field}: {message}"))),
                };
                if let Some((code, message)) = problem {
                    problems.push(FieldError::new(name, code, message));
                }
            }
        }
        (
            ImportRow { user, links },
            Notes {
                problems,
                attribute_columns,
            },
        )
    }

    /// Names an input path of a row's checks (run under the path `prefix`) by the file's
    /// column: a `lastName` problem of a file with `secondname` is a `secondname` problem.
    pub fn column_path(&self, path: &str, prefix: &str, notes: &Notes) -> String {
        let Some(rest) = path
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('.'))
        else {
            return path.to_owned();
        };
        let end = rest.find(['.', '[']).unwrap_or(rest.len());
        let (head, tail) = rest.split_at(end);
        if head == "attributes" {
            let index = tail
                .strip_prefix('[')
                .and_then(|t| t.split(']').next())
                .and_then(|i| i.parse::<usize>().ok());
            if let Some(&column) = index.and_then(|i| notes.attribute_columns.get(i)) {
                let name = self.layout.names[column].trim();
                // An `attributes` cell's attribute keeps its place in the list.
                return if self.columns[column] == Column::Field(Field::Attributes) {
                    format!("{name}{tail}")
                } else {
                    name.to_owned()
                };
            }
            return rest.to_owned();
        }
        let named = self
            .columns
            .iter()
            .zip(&self.layout.names)
            .find_map(|(column, name)| {
                matches!(column, Column::Field(field) if field.name() == head).then_some(name)
            });
        match named {
            Some(name) => format!("{}{tail}", name.trim()),
            None => rest.to_owned(),
        }
    }

    /// `checked` (the row's checks, run under the path `prefix`) with the row's own cell
    /// problems added, every field named by its column.
    pub fn named<T>(
        &self,
        notes: &Notes,
        prefix: &str,
        checked: Result<T, AppError>,
    ) -> Result<T, AppError> {
        let rename = |mut errors: Vec<FieldError>| {
            for error in &mut errors {
                if let Some(field) = &error.field {
                    error.field = Some(self.column_path(field, prefix, notes));
                }
            }
            errors
        };
        let mut problems = notes.problems.clone();
        match checked {
            Ok(value) if problems.is_empty() => Ok(value),
            Ok(_) => Err(AppError::invalid_fields(problems)),
            Err(AppError::BadUserInput { field_errors, .. }) if !field_errors.is_empty() => {
                problems.extend(rename(field_errors));
                Err(AppError::invalid_fields(problems))
            }
            Err(AppError::Conflict { field_errors, .. }) if problems.is_empty() => {
                Err(AppError::conflict(rename(field_errors)))
            }
            Err(other) if problems.is_empty() => Err(other),
            Err(other) => {
                problems.extend(crate::jobs::row_errors(&other));
                Err(AppError::invalid_fields(problems))
            }
        }
    }
}

/// How a list of column names reads in a message.
fn shown(names: &[String]) -> String {
    const MAX: usize = 12;
    let mut shown: Vec<String> = names.iter().take(MAX).map(|n| format!("{n:?}")).collect();
    if names.len() > MAX {
        shown.push(format!("… ({} in all)", names.len()));
    }
    if shown.is_empty() {
        "no columns".to_owned()
    } else {
        shown.join(", ")
    }
}

/// Whether an input field (by this contract's name) holds a secret: a password or a
/// password hash, never returned.
pub fn is_secret(name: &str) -> bool {
    Field::named(name).is_some_and(Field::is_secret)
}

/// The contract's input columns, in the order a written file has them, each with whether a
/// file must have it.
pub fn input_columns() -> impl Iterator<Item = (&'static str, bool)> {
    Field::ALL
        .iter()
        .map(|(field, name, _)| (*name, Field::REQUIRED.contains(field)))
}

/// The column of the attributes named `name` of type `kind`: `attr:<name>`, with `:<TYPE>`
/// added unless it is `STRING` (or the name itself ends in what reads as a type).
pub fn attribute_column(name: &str, kind: AttributeType) -> String {
    let ends_like_a_type = name.rsplit_once(':').is_some_and(|(_, last)| {
        AttributeType::from_stored(&last.trim().to_ascii_uppercase()).is_some()
    });
    if kind == AttributeType::String && !ends_like_a_type {
        format!("attr:{name}")
    } else {
        format!("attr:{name}:{}", kind.as_str())
    }
}

/// Tags as one cell: comma-separated, or a JSON list when that would not read back the same
/// (a tag with a comma, no tags at all).
pub fn tags_cell(tags: &[&str]) -> String {
    let plain = tags
        .iter()
        .all(|tag| !tag.trim().is_empty() && !tag.contains(','));
    let joined = tags.join(",");
    if plain && !joined.is_empty() && !joined.starts_with('[') {
        joined
    } else {
        serde_json::to_string(tags).unwrap_or_default()
    }
}

/// `customInfo` as one cell: objects and lists as JSON, other values as base64 of JSON
/// (a JSON string would not read back as one).
pub fn custom_info_cell(info: &Json) -> String {
    match info {
        Json::Object(_) | Json::Array(_) => info.to_string(),
        other => base64::engine::general_purpose::STANDARD.encode(other.to_string()),
    }
}

/// Tags: comma-separated, or a JSON list of strings (for tags with a comma in them).
fn tags(cell: &str) -> Vec<String> {
    let cell = cell.trim();
    if cell.starts_with('[')
        && let Ok(list) = serde_json::from_str::<Vec<String>>(cell)
    {
        return list;
    }
    cell.split(',')
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What an `attributes` cell and an `approvers` cell look like.
const ATTRIBUTES: &str = r#"[{"name": "level", "value": "3", "type": "NUMBER"}]"#;
const APPROVERS: &str = r#"[{"approver": {"externalId": "m1"}, "label": "MANAGER"}]"#;

/// A cell holding a JSON list of `what`, as that field of `UserImportInput` takes it; the
/// message for one that does not, with an `example`.
fn json_list<T: serde::de::DeserializeOwned>(
    cell: &str,
    what: &str,
    example: &str,
) -> Result<Vec<T>, String> {
    serde_json::from_str(cell.trim()).map_err(|error| {
        format!("must be a JSON list of {what}, as in UserImportInput: {example} ({error})")
    })
}

/// Marks a field cleared, as a `null` in `UserImportInput` does; a field the row also gives
/// a value, or one that cannot be cleared, is refused with the reason.
fn clear_field(field: Field, user: &mut RawUser, links: &mut RawLinks) -> Result<(), &'static str> {
    fn clear<T>(patch: &mut Patch<T>) -> Result<(), &'static str> {
        match patch {
            Patch::Set(_) => Err("the row also gives it a value"),
            Patch::Keep | Patch::Clear => {
                *patch = Patch::Clear;
                Ok(())
            }
        }
    }
    match field {
        Field::ExternalId | Field::Email | Field::FirstName | Field::LastName => {
            Err("a required field cannot be cleared")
        }
        Field::Source => Err("cannot be cleared; an empty cell means the default source"),
        Field::Login => clear(&mut user.login),
        Field::MiddleName => clear(&mut user.middle_name),
        Field::Title => clear(&mut user.title),
        Field::Password => clear(&mut user.password),
        Field::PasswordHash => clear(&mut user.password_hash),
        Field::BirthDate => clear(&mut user.birth_date),
        Field::Gender => clear(&mut user.gender),
        Field::Active => clear(&mut user.active),
        Field::Phone => clear(&mut user.phone),
        Field::City => clear(&mut user.city),
        Field::Department => clear(&mut user.department),
        Field::Position => clear(&mut user.position),
        Field::Company => clear(&mut user.company),
        Field::WorkContact => clear(&mut user.work_contact),
        Field::StructureUid => clear(&mut user.structure_uid),
        Field::Language => clear(&mut user.language),
        Field::FacebookId => clear(&mut user.facebook_id),
        Field::GoogleId => clear(&mut user.google_id),
        Field::EmploymentStartDate => clear(&mut user.employment_start_date),
        Field::EmploymentEndDate => clear(&mut user.employment_end_date),
        Field::PositionAssignedDate => clear(&mut user.position_assigned_date),
        Field::Tags => clear(&mut user.tags),
        Field::Attributes => clear(&mut user.attributes),
        Field::CustomInfo => clear(&mut user.custom_info),
        Field::Approvers => clear(&mut links.approvers),
        Field::ManagerExternalId => clear(&mut links.manager_external_id),
    }
}

fn gender(cell: &str) -> Option<Gender> {
    match cell.trim() {
        "0" => Some(Gender::Male),
        "1" => Some(Gender::Female),
        other => Gender::from_stored(&other.to_ascii_uppercase()),
    }
}

fn flag(cell: &str) -> Option<bool> {
    match cell.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Some(true),
        "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// JSON as it is (the users export writes it so), or base64 of JSON (seed 001).
fn custom_info(cell: &str) -> Option<Json> {
    let cell = cell.trim();
    if cell.starts_with(['{', '[']) {
        return serde_json::from_str(cell).ok();
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cell)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(cell))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What the start of a file (up to its first line break) says: whether it begins with a
/// byte order mark, and its separator (`,`, `;` or a tab: whichever its header line has
/// most of, outside quotes).
pub fn sniff(start: &[u8]) -> Result<(bool, char), AppError> {
    let bom = start.starts_with(BOM);
    let rest = if bom { &start[BOM.len()..] } else { start };
    let line = rest.split(|&b| b == b'\n').next().unwrap_or_default();
    if rest.iter().all(u8::is_ascii_whitespace) {
        return Err(not_csv(
            "the file is empty: it needs a header line and rows",
        ));
    }
    // A multi-byte character may be cut at the end of what was read.
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(error) if error.error_len().is_none() => {
            std::str::from_utf8(&line[..error.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => {
            return Err(not_csv(
                "the file is not CSV text in UTF-8 (a spreadsheet file? save it as CSV UTF-8)",
            ));
        }
    };
    let mut quoted = false;
    let mut counts = [(',', 0), (';', 0), ('\t', 0)];
    for c in text.chars() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted && let Some(count) = counts.iter_mut().find(|(d, _)| *d == c) {
            count.1 += 1;
        }
    }
    let delimiter = counts
        .iter()
        .rev()
        .max_by_key(|(_, n)| *n)
        .filter(|(_, n)| *n > 0)
        .map_or(',', |(c, _)| *c);
    Ok((bom, delimiter))
}

/// Bytes a byte order mark takes at the start of a file that has one.
pub const BOM_LEN: usize = BOM.len();

/// A submission refused for what the file is.
pub fn not_csv(message: impl Into<String>) -> AppError {
    AppError::invalid_fields(vec![FieldError::new("file", "INVALID_FILE", message)])
}

/// A CSV reader over a file positioned after its byte order mark.
pub fn reader<R: Read>(file: R, delimiter: char) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .delimiter(delimiter as u8)
        .has_headers(false)
        .flexible(true)
        .from_reader(file)
}

/// A record's cells as text, each [`formula::restored`]; a record that is not UTF-8 is
/// refused with its line.
pub fn cells(record: &csv::ByteRecord) -> Result<Vec<String>, AppError> {
    record
        .iter()
        .map(|cell| String::from_utf8(cell.to_vec()).map(formula::restored))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            let line = record.position().map_or(0, csv::Position::line);
            not_csv(format!(
                "line {line} is not UTF-8 text; save the file as CSV UTF-8"
            ))
        })
}

/// An uploaded file, its header read: the rest is read row by row.
pub struct Opened {
    reader: csv::Reader<BufReader<File>>,
    pub columns: Columns,
    /// The job's warnings: the columns it does not know.
    pub warnings: Vec<String>,
}

/// One row of a file, as a job stores it.
pub struct StoredRow {
    /// Where the row starts in the file.
    pub line: i32,
    /// The JSON array of its cells.
    pub cells: String,
    pub sends_links: bool,
    /// `(source, externalId)` the row names, when asked for (sync jobs).
    pub user: Option<(String, String)>,
    /// The hashes of the keys the row names ([`super::order`]).
    pub keys: Vec<u64>,
}

/// Reads a whole file once into `hash` (blocking), then its header: a file that is not
/// UTF-8 CSV, or whose header lacks a required column, is refused with the reason.
pub fn open(mut file: File, hash: &mut impl Write) -> Result<Opened, AppError> {
    let io = |e: std::io::Error| AppError::internal(anyhow::anyhow!("reading the upload: {e}"));
    file.rewind().map_err(io)?;
    std::io::copy(&mut file, hash).map_err(io)?;
    file.rewind().map_err(io)?;
    let mut file = BufReader::with_capacity(HEADER_MAX, file);
    let (bom, delimiter) = sniff(file.fill_buf().map_err(io)?)?;
    if bom {
        file.consume(BOM.len());
    }
    let mut reader = reader(file, delimiter);
    let mut header = csv::ByteRecord::new();
    if !reader.read_byte_record(&mut header).map_err(unreadable)? {
        return Err(not_csv(
            "the file is empty: it needs a header line and rows",
        ));
    }
    let names = cells(&header)?;
    let (columns, warnings) = Columns::new(Layout {
        names,
        delimiter,
        bom,
    })?;
    Ok(Opened {
        reader,
        columns,
        warnings,
    })
}

impl Opened {
    /// Reads the rows after the header (blocking), `batch` at a time into `to`, until the
    /// file ends, it is refused (a row that is not UTF-8), or `to` is closed. Rows whose
    /// cells are all empty are left out.
    pub fn send_rows(
        mut self,
        batch: usize,
        keys: bool,
        to: &mpsc::Sender<Result<Vec<StoredRow>, AppError>>,
    ) {
        let mut record = csv::ByteRecord::new();
        let mut rows = Vec::with_capacity(batch);
        loop {
            match self.reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    let _ = to.blocking_send(Err(unreadable(error)));
                    return;
                }
            }
            let stored = cells(&record).and_then(|cells| {
                if cells.iter().all(|cell| cell.trim().is_empty()) {
                    return Ok(None);
                }
                let line = record.position().map_or(0, csv::Position::line);
                let user = keys
                    .then(|| self.columns.sync_key(&cells, line))
                    .transpose()?;
                Ok(Some(StoredRow {
                    line: i32::try_from(line).unwrap_or(i32::MAX),
                    sends_links: self.columns.sends_links(&cells),
                    keys: self.columns.order_keys(&cells),
                    user,
                    cells: serde_json::to_string(&cells).map_err(AppError::internal)?,
                }))
            });
            match stored {
                Ok(None) => {}
                Ok(Some(row)) => rows.push(row),
                Err(error) => {
                    let _ = to.blocking_send(Err(error));
                    return;
                }
            }
            if rows.len() == batch && to.blocking_send(Ok(std::mem::take(&mut rows))).is_err() {
                return;
            }
        }
        if !rows.is_empty() {
            let _ = to.blocking_send(Ok(rows));
        }
    }
}

fn unreadable(error: csv::Error) -> AppError {
    let line = error.position().map_or(0, csv::Position::line);
    not_csv(format!("line {line} cannot be read as CSV: {error}"))
}

/// Writes rows in a layout: its separator, its byte order mark, its columns and one more;
/// each record through [`write_record`].
pub struct Writer {
    delimiter: u8,
    inner: csv::Writer<Vec<u8>>,
}

impl Writer {
    /// A writer whose first output is the header: `layout`'s names and `extra`.
    pub fn new(layout: &Layout, extra: &str) -> Result<Self, AppError> {
        let delimiter = layout.delimiter as u8;
        let start = if layout.bom { BOM.to_vec() } else { Vec::new() };
        let mut writer = Self {
            delimiter,
            inner: Self::writer(delimiter, start),
        };
        let header = layout.names.iter().map(String::as_str).chain([extra]);
        write_record(&mut writer.inner, header)?;
        Ok(writer)
    }

    fn writer(delimiter: u8, start: Vec<u8>) -> csv::Writer<Vec<u8>> {
        csv::WriterBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_writer(start)
    }

    pub fn row(&mut self, cells: &[String], last: &str) -> Result<(), AppError> {
        let record = cells.iter().map(String::as_str).chain([last]);
        write_record(&mut self.inner, record)
    }

    /// What was written since the last call.
    pub fn take(&mut self) -> Result<Vec<u8>, AppError> {
        let fresh = Self::writer(self.delimiter, Vec::new());
        std::mem::replace(&mut self.inner, fresh)
            .into_inner()
            .map_err(|e| AppError::internal(anyhow::anyhow!("CSV buffer: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(names: &[&str]) -> Result<(Columns, Vec<String>), AppError> {
        Columns::new(Layout {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            delimiter: ';',
            bom: false,
        })
    }

    fn strings(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn seed_names_and_contract_names_read_the_same_row() {
        let (seed, _) = columns(&[
            "UID",
            "secondname",
            "firstname",
            "email",
            "is_active",
            "gender",
            "tags",
            "user_field1",
            "manager_uid",
            "customInfo",
        ])
        .unwrap();
        let (row, notes) = seed.read(&strings(&[
            "e1",
            "Smith",
            "John",
            "j@x.io",
            "0",
            "1",
            "a, b,",
            "Cluster1",
            "m1",
            "eyJ2YWNhdGlvbl9kYXlzIjoyMX0=",
        ]));
        assert!(notes.problems.is_empty());
        let user = &row.user;
        assert_eq!(
            (user.external_id.as_str(), user.last_name.as_str()),
            ("e1", "Smith")
        );
        assert!(matches!(user.active, Patch::Set(false)));
        assert!(matches!(user.gender, Patch::Set(Gender::Female)));
        assert!(matches!(&user.tags, Patch::Set(tags) if tags == &["a", "b"]));
        assert!(
            matches!(&user.attributes, Patch::Set(a) if a[0].name == "user_field1" && a[0].value.as_deref() == Some("Cluster1"))
        );
        assert!(matches!(&user.custom_info, Patch::Set(info) if info["vacation_days"] == 21));
        assert!(seed.sends_links(&strings(&["e1", "", "", "", "", "", "", "", "m1"])));
        assert!(!seed.sends_links(&strings(&["e1", "", "", "", "", "", "", "", " "])));

        let (ours, _) =
            columns(&["externalId", "lastName", "firstName", "email", "attr:Level"]).unwrap();
        let (row, _) = ours.read(&strings(&["e1", "Smith", "", "j@x.io", "3"]));
        assert!(matches!(&row.user.attributes, Patch::Set(a) if a[0].name == "Level"));
        assert_eq!(
            row.user.first_name, "",
            "an empty required cell is left to the checks"
        );
    }

    #[test]
    fn a_header_without_required_columns_names_each_one() {
        let Err(AppError::BadUserInput { field_errors, .. }) = columns(&["uid", "mail", "name"])
        else {
            panic!("accepted");
        };
        assert_eq!(
            field_errors[0].message,
            r#"the header (line 1) lacks the required columns email, firstName, lastName (or secondname); it has: "uid", "mail", "name""#
        );

        let Err(AppError::BadUserInput { field_errors, .. }) =
            columns(&["uid", "externalId", "email", "firstName", "lastName"])
        else {
            panic!("accepted");
        };
        assert_eq!(field_errors[0].code, "DUPLICATE_COLUMN");
    }

    #[test]
    fn unknown_columns_are_one_warning_and_export_columns_none() {
        let (_, warnings) = columns(&[
            "id",
            "externalId",
            "email",
            "firstName",
            "lastName",
            "shoe size",
            "createdAt",
            "Nickname",
            " ",
            "",
        ])
        .unwrap();
        assert_eq!(
            warnings,
            [r#"unknown columns, ignored in every row: "shoe size", "Nickname""#]
        );
    }

    #[test]
    fn bad_cells_fail_the_row_under_the_files_column_names() {
        let (columns, _) = columns(&[
            "uid",
            "secondname",
            "firstname",
            "email",
            "gender",
            "is_active",
            "user_field2",
        ])
        .unwrap();
        let (row, notes) = columns.read(&strings(&[
            "e1", "", "J", "j@x.io", "3", "maybe", "v", "extra",
        ]));
        let fields: Vec<Option<&str>> = notes.problems.iter().map(|p| p.field.as_deref()).collect();
        assert_eq!(fields, [None, Some("gender"), Some("is_active")]);
        let Err(AppError::BadUserInput { field_errors, .. }) =
            columns.named(&notes, "csv", row.parse("csv"))
        else {
            panic!("no errors");
        };
        assert!(
            field_errors
                .iter()
                .any(|e| e.field.as_deref() == Some("secondname") && e.code == "REQUIRED"),
            "{field_errors:?}"
        );
    }

    #[test]
    fn json_cells_and_clear_are_checked_and_named_by_their_column() {
        let (columns, warnings) = columns(&[
            "externalId",
            "email",
            "firstName",
            "lastName",
            "attr:Team",
            "Attributes",
            "approvers",
            "phone",
            "clear",
        ])
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let row = |cells: &[&str]| {
            let mut all = strings(&["e1", "e1@x.io", "A", "B"]);
            all.extend(strings(cells));
            all
        };

        // The `attributes` cell's list comes first; problems keep their place in it.
        let cells = row(&[
            "blue",
            r#"[{"name": "level", "value": "x", "type": "NUMBER"}]"#,
            "",
            "",
            "",
        ]);
        let (input, notes) = columns.read(&cells);
        let Patch::Set(attributes) = &input.user.attributes else {
            panic!("no attributes");
        };
        let names: Vec<&str> = attributes.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["level", "Team"]);
        let Err(AppError::BadUserInput { field_errors, .. }) =
            columns.named(&notes, "csv", input.parse("csv"))
        else {
            panic!("accepted");
        };
        assert_eq!(
            field_errors[0].field.as_deref(),
            Some("Attributes[0].value")
        );
        assert!(!columns.sends_links(&cells));

        let (_, notes) = columns.read(&row(&[
            "",
            r#"{"name": "level"}"#,
            r#"[{"approver": "m1"}]"#,
            "+380971234567",
            "phone, nickname, email, middleName, middleName",
        ]));
        let problems: Vec<(&str, &str)> = notes
            .problems
            .iter()
            .map(|p| (p.field.as_deref().unwrap(), p.code.as_str()))
            .collect();
        assert_eq!(
            problems,
            [
                ("Attributes", "INVALID_JSON"),
                ("approvers", "INVALID_JSON"),
                ("clear", "CANNOT_CLEAR"),
                ("clear", "UNKNOWN_FIELD"),
                ("clear", "CANNOT_CLEAR"),
            ]
        );
        assert!(notes.problems[1].message.contains("JSON list of approvers"));
        assert_eq!(
            notes.problems[2].message,
            "phone: the row also gives it a value"
        );

        let cells = row(&["", "[]", "", "", "managerExternalId, tags, customInfo"]);
        let (input, notes) = columns.read(&cells);
        assert!(notes.problems.is_empty(), "{:?}", notes.problems);
        assert_eq!(input.user.attributes, Patch::Set(Vec::new()));
        assert_eq!(input.user.tags, Patch::Clear);
        assert!(matches!(input.links.manager_external_id, Patch::Clear));
        assert!(columns.sends_links(&cells));
        let approvers = row(&["", "", r#"[{"approver": {"email": "b@x.io"}}]"#, "", ""]);
        assert!(columns.sends_links(&approvers));
        assert!(matches!(
            &columns.read(&approvers).0.links.approvers,
            Patch::Set(list) if list.len() == 1
        ));
    }

    #[test]
    fn attribute_columns_carry_their_type_and_read_back_as_written() {
        for (name, kind) in [
            ("level", AttributeType::Number),
            ("team", AttributeType::String),
            ("time:zone", AttributeType::String),
            ("a:number", AttributeType::String),
            ("since:Date", AttributeType::Date),
        ] {
            let column = attribute_column(name, kind);
            assert_eq!(
                Column::of(&column),
                Column::Attribute(name.to_owned(), kind),
                "{column}"
            );
        }
        assert_eq!(attribute_column("team", AttributeType::String), "attr:team");
        assert_eq!(
            attribute_column("a:number", AttributeType::String),
            "attr:a:number:STRING"
        );
        assert_eq!(
            Column::of("ATTR:Level:number"),
            Column::Attribute("Level".to_owned(), AttributeType::Number)
        );
        let (typed, _) = columns(&[
            "externalId",
            "email",
            "firstName",
            "lastName",
            "attr:on:boolean",
        ])
        .unwrap();
        let (row, _) = typed.read(&strings(&["e1", "e1@x.io", "A", "B", "true"]));
        assert!(
            matches!(&row.user.attributes, Patch::Set(a) if a[0].kind == AttributeType::Boolean)
        );
        let Err(AppError::BadUserInput { field_errors, .. }) = columns(&[
            "externalId",
            "email",
            "firstName",
            "lastName",
            "attr:level",
            "attr:level:NUMBER",
        ]) else {
            panic!("accepted");
        };
        assert_eq!(field_errors[0].code, "DUPLICATE_COLUMN");
        assert_eq!(tags_cell(&["a", "b"]), "a,b");
        assert_eq!(tags_cell(&["a, b"]), r#"["a, b"]"#);
        assert_eq!(tags(&tags_cell(&["[x]", "y"])), ["[x]", "y"]);
        assert_eq!(tags_cell(&[]), "[]");
        for info in [
            serde_json::json!("text"),
            serde_json::json!(1.5),
            serde_json::json!({"a": [1]}),
        ] {
            assert_eq!(custom_info(&custom_info_cell(&info)), Some(info));
        }
    }

    #[test]
    fn the_separator_is_the_one_the_header_uses_outside_quotes() {
        let sniffed = |text: &[u8]| sniff(text).unwrap();
        assert_eq!(
            sniffed(b"\xEF\xBB\xBFuid;email;\"a,b\"\n1;2;3\n"),
            (true, ';')
        );
        assert_eq!(sniffed(b"uid,email,firstName\n"), (false, ','));
        assert_eq!(sniffed(b"uid\temail\n"), (false, '\t'));
        let refused = |text: &[u8]| sniff(text).unwrap_err();
        assert!(refused(b"\n\n").to_string().contains("invalid input: file"));
        assert!(matches!(
            refused(b"PK\x03\x04\x14\x00\xff\xfe"),
            AppError::BadUserInput { field_errors, .. } if field_errors[0].message.contains("not CSV text")
        ));
    }
}
