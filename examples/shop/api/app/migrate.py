"""Create the shop's tables. Safe to run again: every step checks first."""

import sys

from common import database

MIGRATIONS = [
    (1, "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price_cents integer NOT NULL)"),
    (2, "INSERT INTO items (name, price_cents) VALUES ('tea', 350), ('coffee', 420)"),
]


def main() -> int:
    with database() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY)")
        cur.execute("SELECT version FROM schema_migrations")
        applied = {row[0] for row in cur.fetchall()}
        for version, statement in MIGRATIONS:
            if version in applied:
                continue
            print(f"applying migration {version}")
            cur.execute(statement)
            cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
    print(f"schema at version {MIGRATIONS[-1][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
