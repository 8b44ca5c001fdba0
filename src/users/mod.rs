//! The user domain: who a person is, parsed once at the boundary into types that cannot
//! hold an invalid value, and stored per tenant. Only `graphql` knows about GraphQL.

pub mod domain;
pub mod export;
pub mod graphql;
pub mod import;
pub mod lookup;
pub mod membership;
pub mod profile;
pub mod store;
