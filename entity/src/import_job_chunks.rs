//! A chunk of a bulk job: a run of its input rows and, once a pass has written them, their
//! results, each kept as one compressed record. A job stores itself per chunk, not per row:
//! a chunk is read, decided, written and settled as a whole, so its bookkeeping costs a
//! statement or two however many rows it holds.
//!
//! `failed` and `pending` count the chunk's results that failed and whose approvers are
//! still to be set, so that failed rows and the second pass's work are found without
//! decoding any other chunk.

use std::io::Read;

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "import_job_chunks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub job_id: i64,
    /// The index of the chunk's first row; the chunk's identity within its job.
    #[sea_orm(primary_key, auto_increment = false)]
    pub first_idx: i32,
    /// The index of its last row (a revert's rows follow its job's and may skip indexes).
    pub last_idx: i32,
    /// How many rows it holds.
    pub row_count: i32,
    pub tenant: String,
    /// The rows as sent ([`StoredInput`], compressed; see [`encode`]); null for a revert,
    /// whose rows are its job's before-images.
    pub input: Option<Vec<u8>>,
    /// The rows' results ([`StoredResult`], compressed); null until the chunk's first pass
    /// has committed.
    pub results: Option<Vec<u8>>,
    /// Results that did not succeed.
    pub failed: i32,
    /// Results whose approvers are still to be set.
    pub pending: i32,
    /// The hashes of the keys its rows name (external ids, emails, logins), sorted, eight
    /// bytes each: a chunk that shares one with an earlier chunk still unwritten waits for
    /// it. Null for a chunk stored before chunks had keys (it waits for every chunk before
    /// it) and for a revert's.
    pub keys: Option<Vec<u8>>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// One input row: `UserImportInput` JSON, or the JSON array of a CSV row's cells, kept as
/// the JSON it is (not as a string within JSON). Its index is the chunk's first index plus
/// its place in the chunk.
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredInput {
    /// Where a CSV row starts in its file (the header is line 1).
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    pub line: Option<i32>,
    #[serde(rename = "i")]
    pub input: Box<RawValue>,
}

/// What a pass did with one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResult {
    #[serde(rename = "i")]
    pub idx: i32,
    /// `source:externalId` as the row names its user.
    #[serde(rename = "k")]
    pub lookup_key: String,
    /// `CREATED`, `UPDATED`, `UNCHANGED`, `SKIPPED`, `DELETED` or `FAILED`.
    #[serde(rename = "a")]
    pub action: String,
    #[serde(rename = "s")]
    pub success: bool,
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    #[serde(rename = "e", default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<StoredError>,
    /// The row's approvers are still to be set (the job's second pass).
    #[serde(rename = "p", default, skip_serializing_if = "std::ops::Not::not")]
    pub links_pending: bool,
}

/// A problem a result reports, as `FieldError` has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredError {
    pub field: Option<String>,
    pub code: String,
    pub message: String,
}

/// zstd's level for chunk records: its fastest but one, which still shrinks JSON rows
/// several times over.
const LEVEL: i32 = 1;

/// A chunk record's bytes: the items as JSON, one per line, compressed with zstd.
pub fn encode<T: Serialize>(items: &[T]) -> Result<Vec<u8>, DbErr> {
    let mut json = Vec::with_capacity(items.len() * 128);
    for item in items {
        serde_json::to_writer(&mut json, item).map_err(|e| DbErr::Json(e.to_string()))?;
        json.push(b'\n');
    }
    zstd::bulk::compress(&json, LEVEL).map_err(|e| DbErr::Custom(format!("compressing: {e}")))
}

/// The items of a chunk record [`encode`] made.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, DbErr> {
    let mut json = Vec::with_capacity(bytes.len() * 4);
    zstd::stream::read::Decoder::new(bytes)
        .and_then(|mut decoder| decoder.read_to_end(&mut json))
        .map_err(|e| DbErr::Custom(format!("an unreadable chunk record: {e}")))?;
    serde_json::Deserializer::from_slice(&json)
        .into_iter::<T>()
        .collect::<Result<_, _>>()
        .map_err(|e| DbErr::Json(format!("an unreadable chunk record: {e}")))
}
