//! The user domain: who a person is, parsed once at the boundary into types that cannot
//! hold an invalid value. No GraphQL in here.

pub mod domain;
