#!/usr/bin/env python3
"""COPY against the JSON-document inserts Roster's bulk writes use on PostgreSQL.

    benches/copy.py [ROUNDS]   # default 3

Writes the HR feed's first pass the way a job writes it, 100,000 users in chunks of
2,000, one transaction a chunk: the users (the columns the feed fills), two tags and two
attributes each, and a before-image row each, into Roster's own schema (migrated by
`roster migrate` into a database of its own, dropped after). Two ways, alternated:

- json: what `db::Insert` sends, `INSERT … SELECT … FROM json_populate_recordset($1)`,
  the users' ids read back with `RETURNING`;
- copy: the users' ids taken first from their sequence, then `COPY … FROM STDIN` (text)
  into each table.

Prints the seconds each way spent waiting for PostgreSQL (statements and commits; the
rows are made between them, off the clock). Needs `psycopg` 3 (`pip install
"psycopg[binary]==3.2.3"`) and a release build of `roster` (ROSTER_BIN, default
target/release/roster). PostgreSQL is reached at ROSTER_TEST_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432).
"""

import datetime
import json
import os
import subprocess
import sys
import time
import uuid

import psycopg

USERS, CHUNK, JOBS = 100_000, 2_000, 20
BASE = os.environ.get("ROSTER_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
ROSTER = os.environ.get("ROSTER_BIN", "target/release/roster")
NOW = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
COLUMNS = [
    "tenant", "source", "external_id", "email", "email_key", "login", "login_key",
    "first_name", "last_name", "active", "phone", "department", "search_key",
    "created_at", "updated_at", "import_digest",
]


def user(i, job):
    email = f"user{i}.{job}@example.com"
    return {
        "tenant": "bench", "source": "hr", "external_id": f"{job}-{i}", "email": email,
        "email_key": email, "login": email, "login_key": email, "first_name": f"First{i}",
        "last_name": f"Last{i}", "active": True, "phone": "+15550001111",
        "department": f"dept{i % 50}", "search_key": f"first{i} last{i} {email}",
        "created_at": NOW, "updated_at": NOW, "import_digest": i * 7919,
    }


def chunks(job):
    for start in range(0, USERS, CHUNK):
        yield [user(i, job) for i in range(start, start + CHUNK)]


class Clock:
    """Seconds spent inside `with clock:` blocks."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        self.started = time.perf_counter()

    def __exit__(self, *_):
        self.seconds += time.perf_counter() - self.started


def insert(table, columns, returning=""):
    names = ", ".join(columns)
    return (f"INSERT INTO {table} ({names}) SELECT {names} "
            f"FROM json_populate_recordset(NULL::{table}, %s::json){returning}")


def by_json(conn, job):
    clock = Clock()
    for rows in chunks(job):
        users = json.dumps(rows)
        with clock:
            conn.execute("BEGIN")
            returned = conn.execute(
                insert("users", COLUMNS, " RETURNING id, source, external_id"), (users,)
            ).fetchall()
        ids = [row[0] for row in returned]
        tags = json.dumps([{"user_id": u, "tag": t, "tenant": "bench"}
                           for u in ids for t in ("a", "b")])
        attributes = json.dumps([{"user_id": u, "name": n, "value": "v", "kind": "STRING",
                                  "tenant": "bench"} for u in ids for n in ("x", "y")])
        images = json.dumps([{"job_id": job, "user_id": u, "tenant": "bench", "idx": k,
                              "lookup_key": f"hr:{k}", "before": None, "left_at": NOW}
                             for k, u in enumerate(ids)])
        with clock:
            conn.execute(insert("user_tags", ["user_id", "tag", "tenant"]), (tags,))
            conn.execute(insert("user_attributes",
                                ["user_id", "name", "value", "kind", "tenant"]), (attributes,))
            conn.execute(insert("import_job_images", ["job_id", "user_id", "tenant", "idx",
                                                      "lookup_key", "before", "left_at"]),
                         (images,))
            conn.execute("COMMIT")
    return clock.seconds


def text(value):
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def by_copy(conn, job):
    clock = Clock()
    for rows in chunks(job):
        with clock:
            conn.execute("BEGIN")
            ids = [row[0] for row in conn.execute(
                "SELECT nextval(pg_get_serial_sequence('users', 'id')) "
                "FROM generate_series(1, %s)", (len(rows),)).fetchall()]
        tables = [
            (f"users (id, {', '.join(COLUMNS)})",
             "".join(f"{u}\t" + "\t".join(text(row[c]) for c in COLUMNS) + "\n"
                     for u, row in zip(ids, rows))),
            ("user_tags (user_id, tag, tenant)",
             "".join(f"{u}\t{t}\tbench\n" for u in ids for t in ("a", "b"))),
            ("user_attributes (user_id, name, value, kind, tenant)",
             "".join(f"{u}\t{n}\tv\tSTRING\tbench\n" for u in ids for n in ("x", "y"))),
            ("import_job_images (job_id, user_id, tenant, idx, lookup_key, before, left_at)",
             "".join(f"{job}\t{u}\tbench\t{k}\thr:{k}\t\\N\t{NOW}\n"
                     for k, u in enumerate(ids))),
        ]
        with clock:
            for table, data in tables:
                with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                    copy.write(data)
            conn.execute("COMMIT")
    return clock.seconds


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    name = f"roster_copy_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{BASE}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        subprocess.run([ROSTER, "migrate", "--database-url", f"{BASE}/{name}"],
                       check=True, capture_output=True)
        with psycopg.connect(f"{BASE}/{name}", autocommit=True) as conn:
            conn.execute(
                "INSERT INTO import_jobs (id, tenant, kind, status, mode, match_by, "
                "replace_fields, dry_run, atomic, run_integrity_check, created_by, created_at, "
                "total, processed, links_total, links_processed, phase, cursor, created, "
                "updated, unchanged, skipped, failed, blocked, unblocked, deactivated, "
                "attempts, version) SELECT g, 'bench', 'IMPORT', 'RUNNING', 'UPSERT', "
                "'EXTERNAL_ID', false, false, false, false, 'bench', now(), 0, 0, 0, 0, "
                "'USERS', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 FROM generate_series(1, %s) g",
                (JOBS,))
            job = 0
            for round_ in range(1, rounds + 1):
                for way in (by_json, by_copy):
                    job += 1
                    conn.execute("TRUNCATE users, user_tags, user_attributes, "
                                 "import_job_images, approver_links, track_assignments, "
                                 "track_completions")
                    conn.execute("VACUUM ANALYZE users")
                    seconds = way(conn, job)
                    print(f"round {round_} {way.__name__[3:]:<5} {seconds:.2f} s", flush=True)
    finally:
        with psycopg.connect(f"{BASE}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
