use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use super::{Principal, Role, TenantId};
use crate::config::JwtConfig;
use crate::validate::{Lines, check_characters};

/// The claims Roster reads. `role` and `sub` are required; a token without them does not parse.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("malformed Authorization header: expected `Bearer <token>`")]
    Malformed,
    #[error("invalid token: {0}")]
    Invalid(String),
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the JWT public key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the JWT public key file {0} holds neither an RSA nor a P-256 (EC) public key in PEM")]
    UnsupportedKey(String),
    #[error(
        "minting tokens needs ROSTER_JWT_SECRET (tokens for a public key are signed by the identity provider)"
    )]
    CannotMint,
    #[error("cannot sign the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// Verifies bearer tokens with the one configured key, and mints them when that key is a secret.
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithms", &self.validation.algorithms)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// The authenticator for the configured key, or `None` when no key is configured.
    pub fn from_config(config: &JwtConfig) -> Result<Option<Self>, KeyError> {
        let issuer = config.jwt_issuer.clone();
        let audience = config.jwt_audience.clone();
        if let Some(secret) = &config.jwt_secret {
            return Ok(Some(Self::hs256(secret.as_bytes(), issuer, audience)));
        }
        let Some(path) = &config.jwt_public_key_file else {
            return Ok(None);
        };
        let shown = path.display().to_string();
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?;
        // The algorithm follows the key, so a token can never choose a weaker one.
        let (algorithm, decoding) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            (Algorithm::RS256, key)
        } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
            (Algorithm::ES256, key)
        } else {
            return Err(KeyError::UnsupportedKey(shown));
        };
        Ok(Some(Self::new(algorithm, decoding, None, issuer, audience)))
    }

    pub fn hs256(secret: &[u8], issuer: Option<String>, audience: Option<String>) -> Self {
        Self::new(
            Algorithm::HS256,
            DecodingKey::from_secret(secret),
            Some(EncodingKey::from_secret(secret)),
            issuer,
            audience,
        )
    }

    fn new(
        algorithm: Algorithm,
        decoding: DecodingKey,
        encoding: Option<EncodingKey>,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Self {
        let mut validation = Validation::new(algorithm);
        let mut required = vec!["exp", "sub"];
        validation.validate_nbf = true;
        match &issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Self {
            decoding,
            encoding,
            validation,
            issuer,
            audience,
        }
    }

    /// Verifies the value of an `Authorization` header.
    pub fn authenticate_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AuthError::Malformed);
        }
        self.verify(token.trim())
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(describe(e.kind())))?;
        let claims = data.claims;
        if claims.sub.trim().is_empty() {
            return Err(AuthError::Invalid("the `sub` claim is empty".to_owned()));
        }
        // The subject is stored (a job's `createdBy`): it holds text as any field does.
        check_characters(&claims.sub, Lines::One).map_err(|problem| {
            AuthError::Invalid(format!("the `sub` claim {}", problem.message))
        })?;
        let tenant = TenantId::parse(claims.tenant.as_deref().unwrap_or(TenantId::DEFAULT))
            .map_err(AuthError::Invalid)?;
        Ok(Principal {
            subject: claims.sub,
            role: claims.role,
            tenant,
        })
    }

    /// Signs a token with the configured secret (HS256 only).
    pub fn mint(
        &self,
        subject: &str,
        role: Role,
        tenant: Option<&str>,
        ttl: Duration,
    ) -> Result<String, KeyError> {
        let key = self.encoding.as_ref().ok_or(KeyError::CannotMint)?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            tenant: tenant.map(str::to_owned),
            exp: now + ttl.as_secs(),
            iat: Some(now),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            key,
        )?)
    }
}

/// A reason a client can act on, without echoing anything secret.
fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "the signature does not verify".into(),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the token is not signed with the configured algorithm".into()
        }
        ErrorKind::InvalidIssuer => "wrong issuer (iss)".into(),
        ErrorKind::InvalidAudience => "wrong audience (aud)".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the `{claim}` claim is missing"),
        ErrorKind::Json(e) => format!("the claims are not valid: {e}"),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            "the token is not a well-formed JWT".into()
        }
        _ => "the token was refused".into(),
    }
}
