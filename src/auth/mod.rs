//! Bearer-token authentication (JWT) and role-based authorization.

mod graphql;
mod token;

pub use graphql::{AuthQuery, RoleGuard, Viewer, principal};
pub use token::{AuthError, Authenticator, KeyError};

use serde::{Deserialize, Serialize};

/// What a token may do. `Admin` may do everything a `Viewer` may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    /// Whether a holder of `self` may use what needs `required`.
    pub fn satisfies(self, required: Role) -> bool {
        self == Role::Admin || self == required
    }
}

/// The tenant ("site") every row belongs to; taken from the token, never from input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(String);

impl TenantId {
    pub const DEFAULT: &'static str = "default";
    const MAX_LEN: usize = 64;

    pub fn parse(value: &str) -> Result<Self, String> {
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(format!(
                "tenant must be 1 to {} characters long",
                Self::MAX_LEN
            ));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err("tenant may hold only letters, digits, '-', '_' and '.'".to_owned());
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The verified caller of one request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
    pub tenant: TenantId,
}
