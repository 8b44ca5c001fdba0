//! Scalars and cursor types shared by the domain segments of the schema.

use async_graphql::connection::CursorType;
use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::NaiveDate;

/// A calendar date. Output `YYYY-MM-DD`; input `YYYY-MM-DD` or `DD.MM.YYYY`.
///
/// Input text is checked by the domain together with the rest of its input object, so
/// an impossible date such as `31.02.1988` is reported in `extensions.fieldErrors` beside
/// every other bad field of the request, not as a lone coercion error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Date(pub String);

#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(text) => Ok(Self(text)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

impl From<NaiveDate> for Date {
    fn from(date: NaiveDate) -> Self {
        Self(date.format("%Y-%m-%d").to_string())
    }
}

/// An opaque cursor over rows ordered by their numeric id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdCursor(pub i64);

const CURSOR_PREFIX: &str = "id:";

impl CursorType for IdCursor {
    type Error = &'static str;

    fn decode_cursor(text: &str) -> Result<Self, Self::Error> {
        URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.strip_prefix(CURSOR_PREFIX)?.parse().ok())
            .map(Self)
            .ok_or("not a cursor of this list: pass an endCursor or edge cursor unchanged")
    }

    fn encode_cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{}", self.0))
    }
}

/// The checked arguments of a page: `first` within `0..=max` (`default` when omitted) and
/// the decoded `after` cursor. `limit` is `first`; callers fetch `limit + 1` rows to learn
/// whether there is a next page.
pub struct PageArgs {
    pub limit: u64,
    pub after: Option<i64>,
}

impl PageArgs {
    pub fn check(
        first: Option<i32>,
        default: i32,
        max: i32,
        after: Option<String>,
    ) -> Result<Self, crate::error::AppError> {
        use crate::error::{AppError, FieldError};
        let first = first.unwrap_or(default);
        if !(0..=max).contains(&first) {
            return Err(AppError::invalid_fields(vec![FieldError::new(
                "first",
                "OUT_OF_RANGE",
                format!("must be between 0 and {max}"),
            )]));
        }
        let after = after
            .map(|cursor| IdCursor::decode_cursor(&cursor))
            .transpose()
            .map_err(|message| {
                AppError::invalid_fields(vec![FieldError::new("after", "INVALID_CURSOR", message)])
            })?;
        Ok(Self {
            limit: u64::try_from(first).unwrap_or(0),
            after: after.map(|cursor| cursor.0),
        })
    }

    /// Cuts the one extra row fetched off; true when there was one (a next page).
    pub fn trim<T>(&self, rows: &mut Vec<T>) -> bool {
        let has_next = rows.len() as u64 > self.limit;
        rows.truncate(usize::try_from(self.limit).unwrap_or(usize::MAX));
        has_next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = IdCursor(42);
        assert_eq!(
            IdCursor::decode_cursor(&cursor.encode_cursor()).unwrap(),
            cursor
        );
        for bad in ["", "42", "!!", &URL_SAFE_NO_PAD.encode("id:x")] {
            assert!(IdCursor::decode_cursor(bad).is_err(), "{bad:?}");
        }
    }
}
