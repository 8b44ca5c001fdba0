//! Roster: a GraphQL API server that imports people into a learning platform and reports on
//! them. `main.rs` only dispatches the command line; everything lives here.

pub mod approvers;
pub mod attributes;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod error;
pub mod graphql;
pub mod http;
pub mod jobs;
pub mod memory;
pub mod scim;
pub mod startup;
pub mod telemetry;
pub mod tracks;
pub mod users;
pub mod validate;
