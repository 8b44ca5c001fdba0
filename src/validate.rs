//! The validation kit every input shares: a refused value is a [`Problem`]; [`Problems`]
//! collects them with their input paths, so that one request reports every bad field at
//! once; text is trimmed, bounded and held to one rule for its characters.

use crate::error::{AppError, FieldError};

/// Why one value was refused: a stable code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn required() -> Self {
        Self::new("REQUIRED", "must not be empty")
    }

    pub(crate) fn too_long(max: usize) -> Self {
        Self::new("TOO_LONG", format!("must be at most {max} characters"))
    }
}

/// Every problem of one request, each under its input path (`user.phone`, `user.tags[2]`).
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    pub fn add(&mut self, path: impl Into<String>, problem: Problem) {
        self.0
            .push(FieldError::new(path, problem.code, problem.message));
    }

    /// The value when it parsed; otherwise records the problem under `path`.
    pub fn check<T>(&mut self, path: impl Into<String>, parsed: Result<T, Problem>) -> Option<T> {
        parsed.map_err(|problem| self.add(path, problem)).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `Ok` when nothing was wrong, else one `BAD_USER_INPUT` naming every field.
    pub fn finish(self) -> Result<(), AppError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AppError::invalid_fields(self.0))
        }
    }

    pub fn into_field_errors(self) -> Vec<FieldError> {
        self.0
    }
}

/// Trimmed text of bounded length; empty is refused.
pub fn required_text(raw: &str, max: usize) -> Result<String, Problem> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(Problem::required());
    }
    bounded(text, max)
}

/// Trimmed optional text of bounded length; blank counts as absent.
pub fn optional_text(raw: &str, max: usize) -> Result<Option<String>, Problem> {
    let text = raw.trim();
    if text.is_empty() {
        Ok(None)
    } else {
        bounded(text, max).map(Some)
    }
}

/// Text of at most `max` characters, all of one line.
pub(crate) fn bounded(text: &str, max: usize) -> Result<String, Problem> {
    if text.chars().count() > max {
        return Err(Problem::too_long(max));
    }
    check_characters(text, Lines::One)?;
    Ok(text.to_owned())
}

/// Whether a text may span lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// A name, a key, a value: no control character at all.
    One,
    /// A description, a JSON string: line breaks and tabs, but never NUL.
    Many,
}

impl Lines {
    fn refuses(self, c: char) -> bool {
        match self {
            Self::One => c.is_control(),
            Self::Many => c == '\0',
        }
    }
}

/// The one rule for the characters of every text Roster stores or looks up, whatever it
/// came in by: never NUL (PostgreSQL cannot hold it in text), and in text of one line no
/// control character.
pub fn check_characters(text: &str, lines: Lines) -> Result<(), Problem> {
    if !text.chars().any(|c| lines.refuses(c)) {
        return Ok(());
    }
    Err(Problem::new(
        "INVALID_CHARACTERS",
        match lines {
            Lines::One => "must not contain control characters",
            Lines::Many => "must not contain NUL characters (\\u0000)",
        },
    ))
}

/// Raw input as a label that can always be stored and shown (a row's `lookupKey`, before
/// its fields are checked): each control character written as its JSON escape, `\u0000`.
pub fn escaped(text: &str) -> String {
    if !text.chars().any(|c| Lines::One.refuses(c)) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if Lines::One.refuses(c) {
                format!("\\u{:04x}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(required_text("  Kyiv ", 10).unwrap(), "Kyiv");
        assert_eq!(required_text("   ", 10).unwrap_err().code, "REQUIRED");
        assert_eq!(optional_text("   ", 10).unwrap(), None);
        assert_eq!(optional_text(" Kyiv", 10).unwrap(), Some("Kyiv".to_owned()));
        assert_eq!(optional_text("Kyiv", 3).unwrap_err().code, "TOO_LONG");
        assert_eq!(
            required_text("a\u{0}b", 10).unwrap_err().code,
            "INVALID_CHARACTERS"
        );
    }

    #[test]
    fn text_of_many_lines_refuses_only_nul() {
        assert!(check_characters("one\ttwo\r\nthree", Lines::Many).is_ok());
        assert!(check_characters("one\ttwo", Lines::One).is_err());
        for lines in [Lines::One, Lines::Many] {
            assert_eq!(
                check_characters("a\0b", lines).unwrap_err().code,
                "INVALID_CHARACTERS"
            );
        }
    }

    #[test]
    fn escaped_text_has_no_control_characters() {
        assert_eq!(escaped("Ївга"), "Ївга");
        assert_eq!(escaped("b\0\u{7}\n"), "b\\u0000\\u0007\\u000a");
    }
}
