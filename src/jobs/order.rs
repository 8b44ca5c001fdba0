//! The order of a job's rows when several workers run its chunks at once.
//!
//! A job's result is that of running its rows in order: a user named twice is created, then
//! updated; of two rows sending one email, the later fails. Rows of different chunks meet
//! only through the keys they name (an external id, an email, a login), so each chunk
//! stores the hashes of its rows' keys ([`ChunkKeys`]), and a worker takes a chunk only
//! when no earlier chunk still unwritten shares one.
//!
//! Keys are what a row sends; the values a stored user gives up are known only once it is
//! read. So a chunk written while an earlier one is still unwritten must not depend on
//! them: when one of its rows fails on a unique value, or moves a user's unique value to
//! another, the chunk is not written then, and runs once every chunk before it is
//! ([`super::claims`]).

use sha2::{Digest, Sha256};

use crate::users::import::ImportRow;
use crate::users::profile::{DEFAULT_SOURCE, Patch, RawUser};

/// The keys of a row of an import, hashed: its `(source, externalId)`, trimmed as the
/// import keys users, and its email and login, trimmed and lower-cased as the import
/// compares them (one kind of key for both, as a login may become an email and the other
/// way round). Two keys that the import tells apart may share a hash here (a chunk then
/// waits for nothing); two it takes for one always do. A blank value names nothing: a row
/// without an external id or an email fails whatever runs before it, and a blank login
/// becomes the email.
pub fn of_user(user: &RawUser) -> Vec<u64> {
    let source = user.source.as_deref().unwrap_or(DEFAULT_SOURCE).trim();
    let external_id = user.external_id.trim();
    let mut keys = Vec::with_capacity(3);
    if !external_id.is_empty() {
        keys.push(hash(b'x', &[source, external_id]));
    }
    let login = match &user.login {
        Patch::Set(login) => Some(login.as_str()),
        _ => None,
    };
    for value in std::iter::once(user.email.as_str()).chain(login) {
        let value = value.trim();
        if !value.is_empty() {
            keys.push(hash(b'm', &[&value.to_lowercase()]));
        }
    }
    keys
}

/// [`of_user`] of an `importUsers` row.
pub fn of_row(row: &ImportRow) -> Vec<u64> {
    of_user(&row.user)
}

fn hash(kind: u8, parts: &[&str]) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update([kind]);
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    u64::from_le_bytes(
        digest[..8]
            .try_into()
            .expect("a SHA-256 digest has 32 bytes"),
    )
}

/// The keys of a chunk's rows, sorted and distinct.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkKeys(Vec<u64>);

impl ChunkKeys {
    pub fn of(keys: impl IntoIterator<Item = u64>) -> Self {
        let mut keys: Vec<u64> = keys.into_iter().collect();
        keys.sort_unstable();
        keys.dedup();
        Self(keys)
    }

    /// As stored: eight bytes each, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        self.0.iter().flat_map(|key| key.to_le_bytes()).collect()
    }

    /// Keys as [`Self::encode`] stored them.
    pub fn decode(bytes: &[u8]) -> Self {
        Self(
            bytes
                .chunks_exact(8)
                .map(|key| u64::from_le_bytes(key.try_into().expect("eight bytes")))
                .collect(),
        )
    }

    /// Whether the two share a key.
    pub fn meets(&self, other: &Self) -> bool {
        let (mut a, mut b) = (self.0.iter().peekable(), other.0.iter().peekable());
        while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
            match x.cmp(y) {
                std::cmp::Ordering::Less => {
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    b.next();
                }
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(source: Option<&str>, external_id: &str, email: &str) -> RawUser {
        RawUser {
            source: source.map(str::to_owned),
            external_id: external_id.to_owned(),
            email: email.to_owned(),
            ..RawUser::default()
        }
    }

    #[test]
    fn keys_the_import_takes_for_one_are_one() {
        let sent = ChunkKeys::of(of_user(&user(None, "7", "Ann@Example.com")));
        let same = ChunkKeys::of(of_user(&user(Some(" default "), " 7", "ann@example.com ")));
        assert_eq!(sent, same);
    }

    #[test]
    fn a_login_meets_the_same_email() {
        let mut with_login = user(None, "1", "a@example.com");
        with_login.login = Patch::Set("B@example.com".to_owned());
        let other = user(None, "2", "b@example.com");
        assert!(ChunkKeys::of(of_user(&with_login)).meets(&ChunkKeys::of(of_user(&other))));
    }

    #[test]
    fn a_blank_login_names_nothing() {
        let mut blank = user(None, "1", "a@example.com");
        blank.login = Patch::Set(" ".to_owned());
        let mut other = user(None, "2", "b@example.com");
        other.login = Patch::Set(String::new());
        assert_eq!(of_user(&blank).len(), 2);
        assert!(!ChunkKeys::of(of_user(&blank)).meets(&ChunkKeys::of(of_user(&other))));
    }

    #[test]
    fn other_users_do_not_meet() {
        let a = ChunkKeys::of(of_user(&user(None, "1", "a@example.com")));
        let b = ChunkKeys::of(of_user(&user(Some("hr"), "1", "b@example.com")));
        assert!(!a.meets(&b));
        assert_eq!(ChunkKeys::decode(&a.encode()), a);
    }
}
