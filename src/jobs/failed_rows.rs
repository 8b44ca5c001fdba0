//! A job's failed rows as a CSV file to fix and send again. No GraphQL here.
//!
//! A CSV job's rows come back as they were sent: the file's columns, separator and byte order
//! mark. An `importUsers` job's rows are written in this contract's column names (see
//! [`csv`]), `,`-separated: the four required columns, then each field some failed row gives,
//! in the order of `UserImportInput`, then `clear` when a row clears a field. Uploaded again,
//! each row reads back as the JSON row it came from. Either way an `errors` column ends the
//! row (`column: message; …`), and a cell that a spreadsheet would run as a formula is
//! written as text ([`csv::write_record`]).
//!
//! A password or a password hash a failed row sent is never written back: its cell is left
//! blank and the row's `errors` say so, to be filled in again.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::stream::{self, Stream, StreamExt};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use super::chunks::{self, InputRow};
use super::csv::{self, Layout, Writer};
use super::{JobKind, RowResult, store};
use crate::approvers::RawApprover;
use crate::auth::TenantId;
use crate::error::AppError;
use crate::users::profile::RawAttribute;

/// Failed rows read and written per step.
const PAGE: u64 = 500;

/// Fields whose blank value clears them, as `null` does: a blank cell would keep them.
const BLANK_CLEARS: [&str; 12] = [
    "login",
    "middleName",
    "title",
    "phone",
    "city",
    "department",
    "position",
    "company",
    "workContact",
    "structureUid",
    "facebookId",
    "googleId",
];

/// The failed rows of a job as CSV, streamed. `None` when the tenant has no such job, or it
/// is a revert (whose rows are not input).
pub async fn failed_rows(
    db: DatabaseConnection,
    tenant: TenantId,
    id: i64,
) -> Result<Option<impl Stream<Item = Result<Vec<u8>, AppError>>>, AppError> {
    let Some(job) = store::find(&db, &tenant, id).await? else {
        return Ok(None);
    };
    if JobKind::from_stored(&job.kind) == JobKind::Revert {
        return Ok(None);
    }
    let form = match job.csv_columns.as_deref() {
        Some(layout) => Form::File(csv::Columns::stored(layout)?),
        None => Form::Json(JsonColumns::of_failed(&db, &tenant, id).await?),
    };
    let mut writer = Writer::new(&form.layout(), "errors")?;
    let header = writer.take()?;
    let form = Arc::new(form);
    let pages = stream::try_unfold((Some(-1), writer), move |(after, mut writer)| {
        let db = db.clone();
        let tenant = tenant.clone();
        let form = Arc::clone(&form);
        async move {
            let Some(after) = after else { return Ok(None) };
            let failed = failed_page(&db, &tenant, id, after).await?;
            let Some(last) = failed.last().map(|(result, _)| result.index) else {
                return Ok(None);
            };
            for (result, input) in failed.iter().filter(|(r, _)| form.includes(r.index)) {
                let (cells, withheld) = form.cells(input)?;
                writer.row(&cells, &errors_cell(result, &withheld))?;
            }
            let next = (failed.len() as u64 == PAGE).then_some(last);
            Ok::<_, AppError>(Some((writer.take()?, (next, writer))))
        }
    });
    Ok(Some(stream::once(async { Ok(header) }).chain(pages)))
}

/// Up to [`PAGE`] failed rows after the index `after`, each with its input.
async fn failed_page(
    db: &DatabaseConnection,
    tenant: &TenantId,
    id: i64,
    after: i32,
) -> Result<Vec<(RowResult, InputRow)>, AppError> {
    let failed = chunks::results_page(db, tenant, id, true, Some(after), PAGE).await?;
    let indexes: Vec<i32> = failed.iter().map(|row| row.index).collect();
    let inputs = chunks::inputs_at(db, id, &indexes).await?;
    if inputs.len() != failed.len() {
        return Err(AppError::internal(anyhow::anyhow!(
            "job {id}: {} failed rows but {} inputs",
            failed.len(),
            inputs.len()
        )));
    }
    Ok(failed.into_iter().zip(inputs).collect())
}

/// How a job's rows are written.
enum Form {
    /// As the file they came from.
    File(csv::Columns),
    /// `UserImportInput` objects, in these columns.
    Json(JsonColumns),
}

impl Form {
    /// Whether a failed row is written: a JSON job's columns were chosen for the rows that
    /// had failed when the download began; rows failing since (the job still runs) are left
    /// for the next download.
    fn includes(&self, index: i32) -> bool {
        match self {
            Self::File(_) => true,
            Self::Json(columns) => columns.rows.contains(&index),
        }
    }

    fn layout(&self) -> Layout {
        match self {
            Self::File(columns) => columns.layout().clone(),
            Self::Json(columns) => columns.layout(),
        }
    }

    /// A row's cells, its secrets left blank, and the columns of the secrets left out.
    fn cells(&self, input: &InputRow) -> Result<(Vec<String>, Vec<String>), AppError> {
        match self {
            Self::File(columns) => {
                let mut cells: Vec<String> =
                    serde_json::from_str(&input.input).map_err(AppError::internal)?;
                let withheld = columns.withhold_secrets(&mut cells);
                Ok((cells, withheld))
            }
            Self::Json(columns) => Ok(columns.cells(&json_row(input)?)),
        }
    }
}

fn json_row(input: &InputRow) -> Result<Map<String, Json>, AppError> {
    serde_json::from_str(&input.input).map_err(AppError::internal)
}

/// The columns that `UserImportInput` rows need.
#[derive(Debug, Default)]
struct JsonColumns {
    /// The input columns ([`csv::input_columns`]) some row gives a value.
    used: Vec<&'static str>,
    /// Whether some row clears a field.
    clear: bool,
    /// The rows these columns were chosen for.
    rows: HashSet<i32>,
}

impl JsonColumns {
    /// The columns the failed rows of a job need (a first read of them).
    async fn of_failed(
        db: &DatabaseConnection,
        tenant: &TenantId,
        id: i64,
    ) -> Result<Self, AppError> {
        let mut columns = Self::default();
        let mut after = -1;
        loop {
            let failed = failed_page(db, tenant, id, after).await?;
            for (result, input) in &failed {
                columns.add(&json_row(input)?);
                columns.rows.insert(result.index);
            }
            match failed.last() {
                Some((result, _)) if failed.len() as u64 == PAGE => after = result.index,
                _ => break,
            }
        }
        Ok(columns)
    }

    fn add(&mut self, row: &Map<String, Json>) {
        for (name, value) in row {
            match cell(name, value) {
                Cell::Clear => self.clear = true,
                Cell::Text(_) => {
                    if let Some(name) = csv::input_columns()
                        .map(|(column, _)| column)
                        .find(|column| column == name)
                        && !self.used.contains(&name)
                    {
                        self.used.push(name);
                    }
                }
            }
        }
    }

    /// The input columns written: the required ones and those used, in contract order.
    fn columns(&self) -> impl Iterator<Item = &'static str> {
        csv::input_columns()
            .filter(|(name, required)| *required || self.used.contains(name))
            .map(|(name, _)| name)
    }

    fn layout(&self) -> Layout {
        let mut names: Vec<String> = self.columns().map(str::to_owned).collect();
        if self.clear {
            names.push("clear".to_owned());
        }
        Layout {
            names,
            delimiter: ',',
            bom: false,
        }
    }

    /// A row's cells, its secrets left blank, and the columns of the secrets left out.
    fn cells(&self, row: &Map<String, Json>) -> (Vec<String>, Vec<String>) {
        let cell = |name: &str| row.get(name).map(|value| cell(name, value));
        let mut withheld = Vec::new();
        let mut cells: Vec<String> = self
            .columns()
            .map(|name| match cell(name) {
                Some(Cell::Text(text)) if csv::is_secret(name) && !text.trim().is_empty() => {
                    withheld.push(name.to_owned());
                    String::new()
                }
                Some(Cell::Text(text)) => text,
                None | Some(Cell::Clear) => String::new(),
            })
            .collect();
        if self.clear {
            let cleared: Vec<&str> = csv::input_columns()
                .map(|(name, _)| name)
                .filter(|name| cell(name) == Some(Cell::Clear))
                .collect();
            cells.push(cleared.join(", "));
        }
        (cells, withheld)
    }
}

/// What a field of a JSON row becomes in a file.
#[derive(Debug, PartialEq, Eq)]
enum Cell {
    Text(String),
    /// Named in the row's `clear` cell.
    Clear,
}

/// A field of a `UserImportInput` row as a cell the CSV reader takes back to the same value.
fn cell(name: &str, value: &Json) -> Cell {
    match (name, value) {
        (_, Json::Null) => Cell::Clear,
        ("customInfo", info) => Cell::Text(csv::custom_info_cell(info)),
        ("tags", Json::Array(tags)) if tags.iter().all(Json::is_string) => {
            let tags: Vec<&str> = tags.iter().filter_map(Json::as_str).collect();
            Cell::Text(csv::tags_cell(&tags))
        }
        (_, Json::String(text)) if text.trim().is_empty() && BLANK_CLEARS.contains(&name) => {
            Cell::Clear
        }
        (_, Json::String(text)) => Cell::Text(text.clone()),
        (_, Json::Bool(flag)) => Cell::Text(flag.to_string()),
        // In the field order of the input types (`name`, `value`, `type`, `class`), as people
        // write them, rather than sorted.
        ("attributes", _) => Cell::Text(in_field_order::<Vec<RawAttribute>>(value)),
        ("approvers", _) => Cell::Text(in_field_order::<Vec<RawApprover>>(value)),
        _ => Cell::Text(value.to_string()),
    }
}

fn in_field_order<T: Serialize + DeserializeOwned>(value: &Json) -> String {
    T::deserialize(value)
        .ok()
        .and_then(|typed| serde_json::to_string(&typed).ok())
        .unwrap_or_else(|| value.to_string())
}

/// A failed row's errors in one cell: `column: message`, `; ` between (an `importUsers`
/// row's `users[12].email` is its column's `email`), then a note for each column
/// `withheld`.
fn errors_cell(result: &RowResult, withheld: &[String]) -> String {
    let prefix = format!("users[{}].", result.index);
    result
        .errors
        .iter()
        .map(|error| match &error.field {
            Some(field) => {
                let field = field.strip_prefix(&prefix).unwrap_or(field);
                format!("{field}: {}", error.message)
            }
            None => error.message.clone(),
        })
        .chain(withheld.iter().map(|column| {
            format!("{column}: not returned, as a password never is; fill it in again")
        }))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::FieldError;
    use crate::users::import::ImportRow;

    /// Writes JSON rows as a failed-rows file would, then reads the file's rows back.
    fn written_and_read(rows: &[Json]) -> (Layout, Vec<Vec<String>>, Vec<ImportRow>) {
        let (layout, written, read) = written_withheld_and_read(rows);
        assert!(written.iter().all(|(_, withheld)| withheld.is_empty()));
        let cells = written.into_iter().map(|(cells, _)| cells).collect();
        (layout, cells, read)
    }

    /// A row's cells, and the columns its secrets were left out of.
    type Written = (Vec<String>, Vec<String>);

    /// As [`written_and_read`], with the columns each row's secrets were left out of.
    fn written_withheld_and_read(rows: &[Json]) -> (Layout, Vec<Written>, Vec<ImportRow>) {
        let rows: Vec<Map<String, Json>> = rows
            .iter()
            .map(|row| row.as_object().unwrap().clone())
            .collect();
        let mut columns = JsonColumns::default();
        rows.iter().for_each(|row| columns.add(row));
        let layout = columns.layout();
        let (reader, warnings) = csv::Columns::new(layout.clone()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let written: Vec<Written> = rows.iter().map(|row| columns.cells(row)).collect();
        let read = written
            .iter()
            .map(|(cells, _)| {
                let (row, notes) = reader.read(cells);
                let checked = reader.named(&notes, "csv", Ok(()));
                assert!(checked.is_ok(), "{cells:?}: {checked:?}");
                row
            })
            .collect();
        (layout, written, read)
    }

    fn as_sent(row: &Json) -> Json {
        let row: ImportRow = serde_json::from_value(row.clone()).unwrap();
        serde_json::to_value(row).unwrap()
    }

    #[test]
    fn every_json_row_reads_back_from_its_cells_as_it_was_sent() {
        let rows = [
            json!({ "externalId": "e1", "email": "e1@x.io", "firstName": "A", "lastName": "B",
                    "source": "hr", "gender": "FEMALE", "active": false, "language": "UK",
                    "birthDate": "1990-02-31",
                    "tags": ["staff", "team, north"],
                    "attributes": [
                        { "name": "level", "value": "x3", "type": "NUMBER" },
                        { "name": "gone", "value": null, "type": "STRING", "class": "hr" },
                    ],
                    "customInfo": { "n": 1, "list": [true, null] },
                    "approvers": [
                        { "approver": { "email": "boss@x.io" }, "label": "HIGHER_MANAGER",
                          "canApprove": false },
                        { "approver": { "externalId": "m1", "source": "hr" }, "label": "MANAGER" },
                    ] }),
            json!({ "externalId": "e2", "email": "e2@x.io", "firstName": "C", "lastName": "D",
                    "middleName": null, "tags": [], "attributes": null, "customInfo": "plain",
                    "managerExternalId": "m2", "approvers": null, "phone": null }),
            json!({ "externalId": "e3", "email": "bad", "firstName": "E", "lastName": "F",
                    "tags": ["[x]"], "customInfo": 42, "attributes": [] }),
            json!({ "externalId": "e4", "email": "e4@x.io", "firstName": "G", "lastName": "H",
                    "customInfo": true, "employmentStartDate": "2020-01-01", "title": "Dr" }),
        ];
        let (layout, cells, read) = written_and_read(&rows);
        assert_eq!(
            layout.names,
            [
                "externalId",
                "source",
                "email",
                "firstName",
                "lastName",
                "title",
                "birthDate",
                "gender",
                "active",
                "language",
                "employmentStartDate",
                "tags",
                "attributes",
                "customInfo",
                "approvers",
                "managerExternalId",
                "clear",
            ]
        );
        assert_eq!(cells[0][11], r#"["staff","team, north"]"#);
        assert_eq!(cells[1][16], "middleName, phone, attributes, approvers");
        for (sent, read) in rows.iter().zip(&read) {
            assert_eq!(as_sent(sent), serde_json::to_value(read).unwrap());
        }
    }

    #[test]
    fn passwords_and_their_hashes_are_left_blank_and_named() {
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
        let rows = [
            json!({ "externalId": "e1", "email": "e1@x.io", "firstName": "A", "lastName": "B",
                    "password": "secret-password", "city": "Lviv" }),
            json!({ "externalId": "e2", "email": "e2@x.io", "firstName": "C", "lastName": "D",
                    "passwordHash": hash }),
            json!({ "externalId": "e3", "email": "e3@x.io", "firstName": "E", "lastName": "F",
                    "password": null }),
        ];
        let (layout, written, read) = written_withheld_and_read(&rows);
        assert_eq!(
            layout.names,
            [
                "externalId",
                "email",
                "firstName",
                "lastName",
                "password",
                "passwordHash",
                "city",
                "clear"
            ]
        );
        assert_eq!(
            written[0].0,
            ["e1", "e1@x.io", "A", "B", "", "", "Lviv", ""]
        );
        assert_eq!(written[0].1, ["password"]);
        assert_eq!(written[1].0, ["e2", "e2@x.io", "C", "D", "", "", "", ""]);
        assert_eq!(written[1].1, ["passwordHash"]);
        // A password cleared is no secret: the row still clears it.
        assert_eq!(written[2].0[7], "password");
        assert!(written[2].1.is_empty());
        assert_eq!(read[0].user.password, crate::users::profile::Patch::Keep);
        assert_eq!(
            read[1].user.password_hash,
            crate::users::profile::Patch::Keep
        );
        assert_eq!(read[2].user.password, crate::users::profile::Patch::Clear);
        let result = RowResult {
            index: 0,
            lookup_key: "default:e1".to_owned(),
            action: crate::users::import::RowAction::Failed,
            success: false,
            user_id: None,
            errors: vec![FieldError::new("users[0].email", "INVALID", "bad")],
            links_pending: false,
            blocked: false,
            unblocked: false,
        };
        assert_eq!(
            errors_cell(&result, &written[0].1),
            "email: bad; password: not returned, as a password never is; fill it in again"
        );
    }

    #[test]
    fn a_blank_text_clears_as_it_does_in_json_and_plain_tags_stay_readable() {
        let rows = [
            json!({ "externalId": "e1", "email": "e1@x.io", "firstName": "A",
                            "lastName": "B", "city": " ", "tags": ["a", "b"] }),
        ];
        let (layout, cells, read) = written_and_read(&rows);
        assert_eq!(
            layout.names,
            [
                "externalId",
                "email",
                "firstName",
                "lastName",
                "tags",
                "clear"
            ]
        );
        assert_eq!(cells[0], ["e1", "e1@x.io", "A", "B", "a,b", "city"]);
        assert_eq!(read[0].user.city, crate::users::profile::Patch::Clear);
    }
}
