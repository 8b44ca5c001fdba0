//! Import digests: how a bulk job tells that a row changes nothing without reading and
//! comparing its whole user.
//!
//! When a job writes a user from a row, it stores with the user ([`users::Model::import_digest`])
//! a digest of the row as sent, of what decides how it reads (the job's mode, match and
//! replace options, a CSV file's columns), and of the `updated_at` the write leaves. A later
//! row that sends the same under the same options, for a user whose `updated_at` has not
//! moved since, would be decided `UNCHANGED`: its user, tags and attributes are what that
//! row made them, and nothing wrote the user since. Any other write of the user moves its
//! `updated_at` (tags and approvers included), so the digest no longer matches and the row
//! is decided the long way, against the user as stored. A user found unchanged that way
//! takes the row's digest, bound to its `updated_at` as it is.
//!
//! Only rows that can be decided this way are given a digest ([`Prepared::digest`]): a
//! row that sends a plain password never is (the digest would be a fast hash of it), nor
//! one of a job that matches users by email or creates only.
//!
//! [`users::Model::import_digest`]: entity::users::Model::import_digest
//! [`Prepared::digest`]: super::process

use chrono::{DateTime, Utc};
use entity::import_jobs as jobs;
use sha2::{Digest, Sha256};

use crate::users::import::{ImportMode, MatchBy, UserImportOptions};

/// Bumped whenever what a row makes of its user changes (how it is read, checked, applied
/// to the user as stored, written and read back), so that no digest of an older version
/// matches: skipping a row is right only while importing it twice gives what importing it
/// once gave.
const VERSION: &[u8] = b"roster-import-digest-1";

/// What, beside the row itself, decides how a job's rows read: `None` when the job's rows
/// are never decided by digest.
pub fn context(job: &jobs::Model, options: &UserImportOptions) -> Option<[u8; 32]> {
    let eligible = matches!(options.mode, ImportMode::Upsert | ImportMode::UpdateOnly)
        && options.match_by == MatchBy::ExternalId
        && !options.dry_run;
    eligible.then(|| {
        let mut hasher = Sha256::new();
        hasher.update(VERSION);
        for part in [
            job.mode.as_str(),
            job.match_by.as_str(),
            if options.replace { "replace" } else { "merge" },
            job.csv_columns.as_deref().unwrap_or("json"),
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.finalize().into()
    })
}

/// A row as sent, read in `context`.
pub fn of_row(context: &[u8; 32], input: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(context);
    hasher.update(input.as_bytes());
    hasher.finalize().into()
}

/// The digest stored with a user that `row` left at `updated_at`.
pub fn stamp(row: &[u8; 32], updated_at: DateTime<Utc>) -> i64 {
    let mut hasher = Sha256::new();
    hasher.update(row);
    hasher.update(updated_at.timestamp_micros().to_le_bytes());
    let digest = hasher.finalize();
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(micros: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(micros).unwrap()
    }

    #[test]
    fn a_stamp_is_bound_to_the_row_and_to_the_moment_it_was_left() {
        let context = [7; 32];
        let row = of_row(&context, r#"{"externalId":"a"}"#);
        assert_eq!(stamp(&row, at(1_000)), stamp(&row, at(1_000)));
        assert_ne!(stamp(&row, at(1_000)), stamp(&row, at(1_001)));
        let other = of_row(&context, r#"{"externalId":"b"}"#);
        assert_ne!(stamp(&row, at(1_000)), stamp(&other, at(1_000)));
        let elsewhere = of_row(&[8; 32], r#"{"externalId":"a"}"#);
        assert_ne!(stamp(&row, at(1_000)), stamp(&elsewhere, at(1_000)));
    }
}
