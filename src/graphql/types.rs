//! Output types shared by the domain segments.

use async_graphql::SimpleObject;

use crate::error::FieldError;

/// One bad field of an input: where (`field`, an input path), why (`code`), and a sentence.
#[derive(SimpleObject)]
#[graphql(name = "FieldError")]
pub struct FieldErrorView {
    pub field: Option<String>,
    pub code: String,
    pub message: String,
}

impl From<FieldError> for FieldErrorView {
    fn from(error: FieldError) -> Self {
        Self {
            field: error.field,
            code: error.code,
            message: error.message,
        }
    }
}
