//! Value types of a user. Each `parse` takes raw input and either returns a valid value or
//! a [`Problem`] (see [`crate::validate`]).

use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2};
use chrono::NaiveDate;

use crate::validate::{Problem, Problems, bounded, required_text};

/// An email address as given (trimmed); compared and kept unique lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, Problem> {
        let email = required_text(raw, Self::MAX_LEN)?;
        // The RFC grammar also admits forms no mail system delivers to (quoted local parts,
        // IP-literal or dotless domains); refuse those as an HR system would not send them.
        let plausible = email_address::EmailAddress::parse_with_options(
            &email,
            email_address::Options::default()
                .without_display_text()
                .without_domain_literal()
                .with_required_tld(),
        )
        .is_ok()
            && !email.starts_with('"');
        if plausible {
            Ok(Self(email))
        } else {
            Err(Problem::new(
                "INVALID_EMAIL",
                format!("{email:?} is not an email address"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form uniqueness and lookups use.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A phone number in E.164: `+`, a country code not starting with 0, at most 15 digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(raw: &str) -> Result<Self, Problem> {
        // Separators people type are dropped; what remains must be E.164.
        let compact: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
            .collect();
        let digits = compact.strip_prefix('+').unwrap_or("");
        let valid = digits.len() >= 8
            && digits.len() <= 15
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if valid {
            Ok(Self(compact))
        } else {
            Err(Problem::new(
                "INVALID_PHONE",
                "must be an international number in E.164 form, e.g. +380971234567",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A calendar date in `YYYY-MM-DD` or `DD.MM.YYYY`; impossible dates such as `31.02.1988`
/// are refused.
pub fn parse_date(raw: &str) -> Result<NaiveDate, Problem> {
    let text = raw.trim();
    // chrono also takes unpadded days and months; the seeds' formats are zero-padded.
    let (format, separators) = if text.contains('.') {
        ("%d.%m.%Y", [(2, b'.'), (5, b'.')])
    } else {
        ("%Y-%m-%d", [(4, b'-'), (7, b'-')])
    };
    let shape_ok = text.len() == 10
        && separators
            .iter()
            .all(|&(index, separator)| text.as_bytes()[index] == separator);
    if !shape_ok {
        return Err(Problem::new(
            "INVALID_DATE",
            format!("{text:?} is not a date in YYYY-MM-DD or DD.MM.YYYY form"),
        ));
    }
    NaiveDate::parse_from_str(text, format).map_err(|_| {
        Problem::new(
            "INVALID_DATE",
            format!("{text:?} is not a real calendar date"),
        )
    })
}

/// Tags as the seeds define them: trimmed, lower-cased, de-duplicated, in first-seen order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(Vec<String>);

impl Tags {
    pub const MAX_LEN: usize = 100;
    pub const MAX_COUNT: usize = 200;

    /// Problems are reported per tag index, so `user.tags[3]` can be named.
    pub fn parse<'a>(
        raw: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, Vec<(usize, Problem)>> {
        let mut tags: Vec<String> = Vec::new();
        let mut problems = Vec::new();
        for (index, tag) in raw.into_iter().enumerate() {
            // Lower-cased before its length is checked: some letters grow when lower-cased.
            match required_text(&tag.to_lowercase(), Self::MAX_LEN) {
                Ok(tag) => {
                    if !tags.contains(&tag) {
                        tags.push(tag);
                    }
                }
                Err(problem) => problems.push((index, problem)),
            }
        }
        if tags.len() > Self::MAX_COUNT {
            problems.push((
                Self::MAX_COUNT,
                Problem::new("TOO_MANY", format!("at most {} tags", Self::MAX_COUNT)),
            ));
        }
        if problems.is_empty() {
            Ok(Self(tags))
        } else {
            Err(problems)
        }
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// The tags of an input as a sorted set (the form they are stored and compared in);
    /// each bad one is recorded under `{path}[i]`.
    pub fn check(raw: &[String], path: &str, problems: &mut Problems) -> Option<Vec<String>> {
        match Self::parse(raw.iter().map(String::as_str)) {
            Ok(tags) => {
                let mut tags = tags.0;
                tags.sort();
                Some(tags)
            }
            Err(tag_problems) => {
                for (index, problem) in tag_problems {
                    problems.add(format!("{path}[{index}]"), problem);
                }
                None
            }
        }
    }
}

/// The type an attribute's value is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    String,
    Number,
    Boolean,
    Date,
}

impl AttributeType {
    pub const MAX_VALUE_LEN: usize = 1000;

    /// The value in its canonical text form: numbers as given, booleans `true`/`false`,
    /// dates `YYYY-MM-DD`.
    pub fn check(self, raw: &str) -> Result<String, Problem> {
        let value = raw.trim();
        match self {
            Self::String => bounded(raw, Self::MAX_VALUE_LEN),
            Self::Number => {
                let decimal = value.strip_prefix('-').unwrap_or(value);
                let (whole, fraction) = decimal.split_once('.').unwrap_or((decimal, ""));
                let ok = !whole.is_empty()
                    && whole.bytes().all(|b| b.is_ascii_digit())
                    && fraction.bytes().all(|b| b.is_ascii_digit())
                    && (!decimal.contains('.') || !fraction.is_empty())
                    && value.len() <= 64;
                if ok {
                    Ok(value.to_owned())
                } else {
                    Err(Problem::new(
                        "INVALID_NUMBER",
                        format!("{value:?} is not a decimal number"),
                    ))
                }
            }
            Self::Boolean => match value {
                "true" | "false" => Ok(value.to_owned()),
                _ => Err(Problem::new("INVALID_BOOLEAN", "must be true or false")),
            },
            Self::Date => parse_date(value).map(|d| d.format("%Y-%m-%d").to_string()),
        }
    }
}

/// A password as stored: a PHC string, never the password itself.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHashString(String);

impl std::fmt::Debug for PasswordHashString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHashString(..)")
    }
}

impl PasswordHashString {
    pub const MIN_PASSWORD_LEN: usize = 8;
    const MAX_PASSWORD_LEN: usize = 1024;
    const MAX_HASH_LEN: usize = 255;
    /// 256 MiB: well above OWASP's recommendations, well below what stalls a server.
    const MAX_MEMORY_KIB: u32 = 262_144;
    const MAX_TIME_COST: u32 = 16;
    const MAX_PARALLELISM: u32 = 16;

    /// Whether a plain password is acceptable: its length only, as NIST SP 800-63B advises.
    pub fn check_plain(password: &str) -> Result<(), Problem> {
        let length = password.chars().count();
        if length < Self::MIN_PASSWORD_LEN {
            return Err(Problem::new(
                "TOO_SHORT",
                format!("must be at least {} characters", Self::MIN_PASSWORD_LEN),
            ));
        }
        if length > Self::MAX_PASSWORD_LEN {
            return Err(Problem::too_long(Self::MAX_PASSWORD_LEN));
        }
        Ok(())
    }

    /// Whether `password` is the one `stored` (an argon2id PHC string) was made from.
    /// Hashes of other algorithms never match here, so the password is hashed anew.
    pub fn verify(stored: &str, password: &str) -> bool {
        PasswordHash::new(stored).is_ok_and(|hash| {
            hash.algorithm == Algorithm::Argon2id.ident()
                && Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
        })
    }

    /// Hashes a plain password with Argon2id (the crate's recommended parameters).
    pub fn hash(password: &str) -> Result<Self, Problem> {
        Self::check_plain(password)?;
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| Problem::new("INVALID_PASSWORD", e.to_string()))?;
        Ok(Self(hash.to_string()))
    }

    /// Accepts an already hashed password: a PHC string of argon2id, or a bcrypt hash.
    pub fn parse(raw: &str) -> Result<Self, Problem> {
        let text = raw.trim();
        let refused = || {
            Problem::new(
                "INVALID_PASSWORD_HASH",
                "must be a PHC string of argon2id ($argon2id$…) or a bcrypt hash ($2b$…)",
            )
        };
        if text.len() > Self::MAX_HASH_LEN {
            return Err(Problem::too_long(Self::MAX_HASH_LEN));
        }
        if is_bcrypt(text) {
            return Ok(Self(text.to_owned()));
        }
        let parsed = PasswordHash::new(text).map_err(|_| refused())?;
        let argon2id = parsed.algorithm == Algorithm::Argon2id.ident()
            && parsed.salt.is_some()
            && parsed.hash.is_some();
        if !argon2id {
            return Err(refused());
        }
        // Verifying a password later costs what the hash's parameters say: refuse costs
        // that would stall the server.
        let params = argon2::Params::try_from(&parsed).map_err(|_| refused())?;
        if params.m_cost() > Self::MAX_MEMORY_KIB
            || params.t_cost() > Self::MAX_TIME_COST
            || params.p_cost() > Self::MAX_PARALLELISM
        {
            return Err(Problem::new(
                "HASH_TOO_COSTLY",
                format!(
                    "argon2id parameters may be at most m={}, t={}, p={}",
                    Self::MAX_MEMORY_KIB,
                    Self::MAX_TIME_COST,
                    Self::MAX_PARALLELISM
                ),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `$2a$`/`$2b$`/`$2y$`, a two-digit cost from 4 to 31, then 53 characters of bcrypt base64.
fn is_bcrypt(text: &str) -> bool {
    let Some(rest) = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))
    else {
        return false;
    };
    let Some((cost, body)) = rest.split_once('$') else {
        return false;
    };
    let cost_ok = cost.len() == 2 && cost.parse::<u8>().is_ok_and(|c| (4..=31).contains(&c));
    cost_ok
        && body.len() == 53
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AppError;

    #[test]
    fn emails() {
        for good in ["john.smith@example.com", " Jane+hr@Sub.Example.org "] {
            assert!(Email::parse(good).is_ok(), "{good}");
        }
        assert_eq!(
            Email::parse(" A@Example.COM ").unwrap().normalized(),
            "a@example.com"
        );
        for bad in [
            "",
            "john",
            "john@",
            "@example.com",
            "john@localhost",
            "a b@example.com",
            "john@[127.0.0.1]",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            Email::parse(&format!("{}@example.com", "a".repeat(250)))
                .unwrap_err()
                .code,
            "TOO_LONG"
        );
    }

    #[test]
    fn phones_are_e164() {
        assert_eq!(
            Phone::parse("+380971234567").unwrap().as_str(),
            "+380971234567"
        );
        assert_eq!(
            Phone::parse("+1 (415) 555-0100").unwrap().as_str(),
            "+14155550100"
        );
        for bad in [
            "380971234567",
            "+0971234567",
            "+12",
            "+1234567890123456",
            "+38097abc4567",
            "",
        ] {
            assert_eq!(
                Phone::parse(bad).unwrap_err().code,
                "INVALID_PHONE",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn dates_in_both_seed_formats() {
        let expected = NaiveDate::from_ymd_opt(1988, 7, 26).unwrap();
        assert_eq!(parse_date("26.07.1988").unwrap(), expected);
        assert_eq!(parse_date("1988-07-26").unwrap(), expected);
        for bad in [
            "31.02.1988",
            "1988-02-30",
            "26/07/1988",
            "1988-7-26",
            "26.7.1988",
            "tomorrow",
            "",
        ] {
            assert_eq!(parse_date(bad).unwrap_err().code, "INVALID_DATE", "{bad:?}");
        }
        assert!(parse_date("29.02.1988").is_ok(), "a leap day");
        assert!(parse_date("29.02.1989").is_err());
    }

    #[test]
    fn tags_are_normalised() {
        let tags = Tags::parse([" Marketer", "netherlands", "MARKETER", "department-1"]).unwrap();
        assert_eq!(tags.as_slice(), ["marketer", "netherlands", "department-1"]);
        let problems = Tags::parse(["ok", "  ", &"x".repeat(101)]).unwrap_err();
        assert_eq!(
            problems
                .iter()
                .map(|(i, p)| (*i, p.code))
                .collect::<Vec<_>>(),
            [(1, "REQUIRED"), (2, "TOO_LONG")]
        );
    }

    #[test]
    fn attribute_values_follow_their_type() {
        assert_eq!(AttributeType::Number.check("12.50").unwrap(), "12.50");
        assert_eq!(AttributeType::Number.check("-3").unwrap(), "-3");
        for bad in ["1e5", "12.", ".5", "abc", "1,5", ""] {
            assert!(AttributeType::Number.check(bad).is_err(), "{bad:?}");
        }
        assert_eq!(AttributeType::Boolean.check("true").unwrap(), "true");
        assert!(AttributeType::Boolean.check("yes").is_err());
        assert_eq!(
            AttributeType::Date.check("26.07.1988").unwrap(),
            "1988-07-26"
        );
        assert!(AttributeType::Date.check("31.02.1988").is_err());
        assert!(AttributeType::String.check("Cluster1").is_ok());
    }

    #[test]
    fn passwords_are_hashed_with_argon2id() {
        let hash = PasswordHashString::hash("correct horse").unwrap();
        assert!(hash.as_str().starts_with("$argon2id$"));
        assert!(!hash.as_str().contains("correct horse"));
        assert_eq!(
            PasswordHashString::hash("short").unwrap_err().code,
            "TOO_SHORT"
        );
        assert!(
            !format!("{hash:?}").contains("argon2"),
            "Debug never shows the hash"
        );
    }

    #[test]
    fn only_argon2id_and_bcrypt_hashes_are_accepted() {
        let argon = PasswordHashString::hash("correct horse").unwrap();
        assert!(PasswordHashString::parse(argon.as_str()).is_ok());
        let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
        assert!(PasswordHashString::parse(bcrypt).is_ok());
        for bad in [
            "plaintext-password",
            "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$Aq0vN6CJ3Ks0j2XsXNJqDg",
            "$2b$99$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            "$2b$12$short",
            "$pbkdf2-sha256$29000$N2ZMaW$abc",
        ] {
            assert_eq!(
                PasswordHashString::parse(bad).unwrap_err().code,
                "INVALID_PASSWORD_HASH",
                "{bad}"
            );
        }
        let costly =
            "$argon2id$v=19$m=4194304,t=4294967295,p=255$c2FsdHNhbHQ$Aq0vN6CJ3Ks0j2XsXNJqDg";
        assert_eq!(
            PasswordHashString::parse(costly).unwrap_err().code,
            "HASH_TOO_COSTLY"
        );
    }

    #[test]
    fn problems_collect_every_field() {
        let mut problems = Problems::default();
        assert!(problems.check("user.email", Email::parse("nope")).is_none());
        assert!(problems.check("user.phone", Phone::parse("123")).is_none());
        assert_eq!(
            problems.check("user.firstName", required_text(" John ", 100)),
            Some("John".to_owned())
        );
        let Err(AppError::BadUserInput {
            message,
            field_errors,
        }) = problems.finish()
        else {
            panic!("expected BAD_USER_INPUT");
        };
        assert_eq!(message, "invalid input: user.email, user.phone");
        assert_eq!(field_errors.len(), 2);
    }
}
