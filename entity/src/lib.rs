//! Database entities.
