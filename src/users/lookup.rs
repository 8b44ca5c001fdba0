//! `UserLookup`: one user named by exactly one of its keys.

use super::domain::Email;
use super::profile::DEFAULT_SOURCE;
use crate::error::AppError;
use crate::validate::{Problem, Problems, required_text};

/// How a single user is found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserKey {
    Id(i64),
    External { source: String, external_id: String },
    Email(String),
}

impl UserKey {
    /// Exactly one of `id`, `external_id` (with an optional `source`) or `email`; problems
    /// are named under `path` (e.g. `lookup.email`).
    pub fn from_parts(
        id: Option<&str>,
        external_id: Option<&str>,
        source: Option<&str>,
        email: Option<&str>,
        path: &str,
    ) -> Result<Self, AppError> {
        let at = |field: &str| format!("{path}.{field}");
        let mut problems = Problems::default();
        let given = [id.is_some(), external_id.is_some(), email.is_some()]
            .into_iter()
            .filter(|given| *given)
            .count();
        if given != 1 {
            problems.add(
                path,
                Problem::new(
                    "ONE_KEY_REQUIRED",
                    format!("give exactly one of id, externalId or email (got {given})"),
                ),
            );
        }
        if source.is_some() && external_id.is_none() {
            problems.add(
                at("source"),
                Problem::new("UNEXPECTED", "source is used only together with externalId"),
            );
        }
        std::mem::take(&mut problems).finish()?;
        let key = if let Some(id) = id {
            problems.check(
                at("id"),
                id.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .map(UserKey::Id)
                    .ok_or_else(|| Problem::new("INVALID_ID", format!("{id:?} is not a user id"))),
            )
        } else if let Some(external_id) = external_id {
            let source = match source {
                Some(source) => problems.check(at("source"), required_text(source, 100)),
                None => Some(DEFAULT_SOURCE.to_owned()),
            };
            let external_id = problems.check(at("externalId"), required_text(external_id, 255));
            source
                .zip(external_id)
                .map(|(source, external_id)| UserKey::External {
                    source,
                    external_id,
                })
        } else {
            problems
                .check(at("email"), Email::parse(email.unwrap_or_default()))
                .map(|email| UserKey::Email(email.normalized()))
        };
        problems.finish()?;
        key.ok_or_else(|| AppError::bad_input("invalid lookup"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(
        id: Option<&str>,
        external_id: Option<&str>,
        source: Option<&str>,
        email: Option<&str>,
    ) -> Result<UserKey, AppError> {
        UserKey::from_parts(id, external_id, source, email, "lookup")
    }

    #[test]
    fn exactly_one_key() {
        assert_eq!(key(Some("7"), None, None, None).unwrap(), UserKey::Id(7));
        assert_eq!(
            key(None, Some("cl1"), None, None).unwrap(),
            UserKey::External {
                source: "default".into(),
                external_id: "cl1".into()
            }
        );
        assert_eq!(
            key(None, None, None, Some("A@Example.com")).unwrap(),
            UserKey::Email("a@example.com".into())
        );
        for bad in [
            key(None, None, None, None),
            key(Some("7"), None, None, Some("a@example.com")),
            key(None, None, Some("hr"), Some("a@example.com")),
            key(Some("x"), None, None, None),
            key(Some("-1"), None, None, None),
            key(None, None, None, Some("nope")),
        ] {
            assert!(matches!(bad, Err(AppError::BadUserInput { .. })), "{bad:?}");
        }
    }
}
