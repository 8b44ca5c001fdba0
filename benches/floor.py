#!/usr/bin/env python3
"""The floor of a bulk import: what the same facts cost the database when the cheapest
client writes them into a lean schema that holds them.

    floor.py sqlite N TAGS ATTRIBUTES   # Python's sqlite3, executemany, one transaction
    floor.py postgres N TAGS ATTRIBUTES # one INSERT ... SELECT generate_series per table

N users, each with a phone, a department, a manager (all but the first), TAGS tags and
ATTRIBUTES attributes. Prints the seconds the writes took, from the first insert to the
commit. PostgreSQL is reached with `psql` at ROSTER_TEST_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432), in a database of its own, dropped after.
"""

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

SCHEMA = """
CREATE TABLE users (
    id BIGINT PRIMARY KEY,
    tenant TEXT NOT NULL,
    source TEXT NOT NULL,
    external_id TEXT NOT NULL,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    login TEXT NOT NULL,
    login_key TEXT NOT NULL,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    phone TEXT,
    department TEXT,
    active BOOLEAN NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (tenant, source, external_id),
    UNIQUE (tenant, email_key),
    UNIQUE (tenant, login_key)
);
CREATE INDEX users_department ON users (tenant, department);
CREATE INDEX users_active ON users (tenant, active);
CREATE TABLE user_tags (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (user_id, tag)
);
CREATE INDEX user_tags_tag ON user_tags (tag);
CREATE TABLE user_attributes (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (user_id, name)
);
CREATE TABLE approver_links (
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    approver_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, approver_id)
);
CREATE INDEX approver_links_approver ON approver_links (approver_id);
"""

NOW = "2026-12-07T00:00:00Z"


def sqlite_floor(n, tags, attributes):
    with tempfile.TemporaryDirectory() as directory:
        db = sqlite3.connect(os.path.join(directory, "floor.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        db.executescript(SCHEMA)
        started = time.perf_counter()
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO users VALUES (?, 'default', 'hr', ?, ?, ?, ?, ?, ?, 'Feed', ?, ?, 1, ?, ?)",
            (
                (i, f"e{i}", f"e{i}@example.com", f"e{i}@example.com", f"e{i}@example.com",
                 f"e{i}@example.com", f"First{i}", f"+4420{i:08d}", f"dept-{i % 50}", NOW, NOW)
                for i in range(n)
            ),
        )
        for t in range(tags):
            db.executemany(
                "INSERT INTO user_tags VALUES (?, ?)",
                ((i, "staff" if t == 0 else f"team-{t}-{i % 20}") for i in range(n)),
            )
        for a in range(attributes):
            db.executemany(
                "INSERT INTO user_attributes VALUES (?, ?, ?)",
                ((i, f"attribute-{a}", f"{i % 12}") for i in range(n)),
            )
        db.executemany(
            "INSERT INTO approver_links VALUES (?, ?)",
            ((i, i // 10) for i in range(1, n)),
        )
        db.execute("COMMIT")
        elapsed = time.perf_counter() - started
        db.close()
        return elapsed


def psql(url, sql):
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", url],
        input=sql, text=True, check=True, stdout=subprocess.DEVNULL,
    )


def postgres_floor(n, tags, attributes):
    admin = os.environ.get("ROSTER_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
    name = f"roster_floor_{uuid.uuid4().hex}"
    psql(f"{admin}/postgres", f'CREATE DATABASE "{name}"')
    url = f"{admin}/{name}"
    try:
        psql(url, SCHEMA)
        statements = [
            "INSERT INTO users SELECT g, 'default', 'hr', 'e' || g, 'e' || g || '@example.com', "
            "'e' || g || '@example.com', 'e' || g || '@example.com', 'e' || g || '@example.com', "
            "'First' || g, 'Feed', '+4420' || lpad(g::text, 8, '0'), 'dept-' || (g % 50), true, "
            f"'{NOW}', '{NOW}' FROM generate_series(0, {n - 1}) g;"
        ]
        for t in range(tags):
            tag = "'staff'" if t == 0 else f"'team-{t}-' || (g % 20)"
            statements.append(
                f"INSERT INTO user_tags SELECT g, {tag} FROM generate_series(0, {n - 1}) g;"
            )
        for a in range(attributes):
            statements.append(
                f"INSERT INTO user_attributes SELECT g, 'attribute-{a}', (g % 12)::text "
                f"FROM generate_series(0, {n - 1}) g;"
            )
        statements.append(
            f"INSERT INTO approver_links SELECT g, g / 10 FROM generate_series(1, {n - 1}) g;"
        )
        started = time.perf_counter()
        psql(url, "BEGIN;\n" + "\n".join(statements) + "\nCOMMIT;\n")
        return time.perf_counter() - started
    finally:
        psql(f"{admin}/postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("sqlite", "postgres"):
        sys.exit(__doc__)
    backend, n, tags, attributes = sys.argv[1], *map(int, sys.argv[2:])
    floor = sqlite_floor if backend == "sqlite" else postgres_floor
    print(f"{floor(n, tags, attributes):.3f}")


if __name__ == "__main__":
    main()
