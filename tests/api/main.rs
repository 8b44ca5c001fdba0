//! Integration tests: each starts the real server on a random port with its own database
//! and talks HTTP/WebSocket to it. All modules compile into this one test binary.

mod helpers;

mod admin;
mod approvers;
mod attributes;
mod auth;
mod characters;
mod cli;
mod connections;
mod failures;
mod formulas;
mod guards;
mod http;
mod import_command;
mod import_following;
mod job_digests;
mod job_order;
mod job_workers;
mod job_writes;
mod jobs;
mod jobs_command;
mod limits;
mod listing;
mod ops;
mod retention;
mod retries;
mod reverts;
mod schema;
mod scim;
mod scim_bulk;
mod scim_groups;
mod sync;
mod tracks;
mod upgrades;
mod uploads;
mod users;
mod ws;
