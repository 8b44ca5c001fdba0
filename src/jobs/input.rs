//! How a job's stored rows read back: the `UserImportInput` JSON of an `importUsers` row,
//! or the cells of a CSV row read through its file's columns.

use entity::import_jobs as jobs;
use serde_json::{Map, Value as Json};

use super::chunks::InputRow;
use super::{RowResult, csv};
use crate::approvers::ApproverChange;
use crate::error::AppError;
use crate::users::import::ImportRow;
use crate::users::profile::UserChanges;

/// How a job's stored rows read: `UserImportInput` JSON, or a CSV file's cells.
pub enum Inputs {
    Json,
    Csv(csv::Columns),
}

/// The field path CSV rows are checked under, before their errors are named by column.
const CSV_PREFIX: &str = "csv";

impl Inputs {
    pub fn of(job: &jobs::Model) -> Result<Self, AppError> {
        match &job.csv_columns {
            None => Ok(Self::Json),
            Some(layout) => Ok(Self::Csv(csv::Columns::stored(layout)?)),
        }
    }

    /// A row's lookup key, and its fields and approvers checked.
    pub fn parse(
        &self,
        row: &InputRow,
    ) -> (String, Result<(UserChanges, ApproverChange), AppError>) {
        match self {
            Self::Json => match serde_json::from_str::<ImportRow>(&row.input) {
                Ok(input) => (input.lookup_key(), input.parse(&prefix(row.idx))),
                Err(error) => (format!("row {}", row.idx), Err(unreadable(&error))),
            },
            Self::Csv(columns) => {
                let line = row.line.unwrap_or_default();
                match serde_json::from_str::<Vec<String>>(&row.input) {
                    Ok(cells) => {
                        let (input, notes) = columns.read(&cells);
                        let key = format!("{} (line {line})", input.lookup_key());
                        (
                            key,
                            columns.named(&notes, CSV_PREFIX, input.parse(CSV_PREFIX)),
                        )
                    }
                    Err(error) => (format!("line {line}"), Err(unreadable(&error))),
                }
            }
        }
    }

    /// A row's approver change, for the second pass.
    pub fn links(&self, row: &InputRow) -> Result<ApproverChange, AppError> {
        match self {
            Self::Json => {
                let input =
                    serde_json::from_str::<ImportRow>(&row.input).map_err(|e| unreadable(&e))?;
                input
                    .links
                    .change(input.user.source.as_deref(), &prefix(row.idx))
            }
            Self::Csv(columns) => {
                let cells =
                    serde_json::from_str::<Vec<String>>(&row.input).map_err(|e| unreadable(&e))?;
                let (input, notes) = columns.read(&cells);
                let change = input.links.change(input.user.source.as_deref(), CSV_PREFIX);
                columns.named(&notes, CSV_PREFIX, change)
            }
        }
    }

    /// The row as stored, without the password or password hash it sends, when it sends
    /// one: what the row keeps once its user is written, so that a plain password is kept
    /// no longer than it is needed (a failed row keeps it, to be retried).
    pub fn without_secrets(&self, row: &InputRow) -> Option<String> {
        match self {
            Self::Json => {
                if !row.input.contains("\"password") {
                    return None;
                }
                let mut fields: Map<String, Json> = serde_json::from_str(&row.input).ok()?;
                let sent = fields.len();
                fields.retain(|name, value| value.is_null() || !csv::is_secret(name));
                (fields.len() != sent).then(|| Json::Object(fields).to_string())
            }
            Self::Csv(columns) if columns.has_secrets() => {
                let mut cells: Vec<String> = serde_json::from_str(&row.input).ok()?;
                let withheld = columns.withhold_secrets(&mut cells);
                (!withheld.is_empty()).then(|| Json::from(cells).to_string())
            }
            Self::Csv(_) => None,
        }
    }

    /// Names the problems the second pass found (under the paths [`Inputs::links`] gave)
    /// as the rows' own checks are named: by the file's columns, for a CSV job.
    pub fn name_link_errors(&self, rows: &mut [RowResult]) {
        let Self::Csv(columns) = self else { return };
        let notes = csv::Notes::default();
        for error in rows.iter_mut().flat_map(|row| row.errors.iter_mut()) {
            if let Some(field) = &error.field {
                error.field = Some(columns.column_path(field, CSV_PREFIX, &notes));
            }
        }
    }

    /// The hashes of the keys a row names ([`super::order`]); none for a row that cannot
    /// be read (it fails whatever runs before it).
    pub fn order_keys(&self, row: &InputRow) -> Vec<u64> {
        match self {
            Self::Json => serde_json::from_str::<ImportRow>(&row.input)
                .map(|input| super::order::of_row(&input))
                .unwrap_or_default(),
            Self::Csv(columns) => serde_json::from_str::<Vec<String>>(&row.input)
                .map(|cells| columns.order_keys(&cells))
                .unwrap_or_default(),
        }
    }

    /// Whether a row says anything about its user's approvers (so that the job's second
    /// pass has work for it).
    pub fn sends_links(&self, row: &InputRow) -> bool {
        match self {
            Self::Json => serde_json::from_str::<ImportRow>(&row.input)
                .is_ok_and(|input| input.links.sends_links()),
            Self::Csv(columns) => serde_json::from_str::<Vec<String>>(&row.input)
                .is_ok_and(|cells| columns.sends_links(&cells)),
        }
    }
}

fn unreadable(error: &serde_json::Error) -> AppError {
    AppError::bad_input(format!("unreadable row: {error}"))
}

/// The input path of a row's fields, e.g. `users[12]`.
fn prefix(index: i32) -> String {
    format!("users[{index}]")
}
