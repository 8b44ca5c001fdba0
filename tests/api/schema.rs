//! `schema.graphql` is exactly what `roster schema` prints.

use std::process::Command;

#[test]
fn schema_file_matches_roster_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let printed = Command::new(env!("CARGO_BIN_EXE_roster"))
        .arg("schema")
        .output()
        .expect("roster schema runs");
    assert!(printed.status.success());
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert_eq!(
        printed,
        roster::graphql::sdl(),
        "the CLI prints the schema the server serves"
    );
    assert!(
        committed == printed,
        "schema.graphql is out of date: regenerate it with `cargo run -- schema > schema.graphql`"
    );
}
