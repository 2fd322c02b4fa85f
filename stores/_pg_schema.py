"""``PostgresStore``'s tables and their migrations, its advisory-lock keys, and what a
PostgreSQL error means for durably.

Rules of this module:

- durably creates and migrates its own tables: ``durably_schema(version)`` says which
  ``DDL_VERSION`` the tables are at, and the first open of a database creates them.
  Creating and migrating run in one transaction under an advisory lock, so two
  processes opening a new database at once do not race (the second waits, then finds
  the tables made). A database at a newer version is refused, and nothing is changed.
- Every advisory-lock key is derived from the store's schema name, so that stores in two
  schemas of one database lock independently (advisory locks are per database).
- A server error becomes a ``StoreError`` subclass whose message names the server (never
  the password) and says what to do.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from durably.core._errors import (
    ConfigurationError,
    StoreError,
    StoreFullError,
    StoreNotFoundError,
    StoreUnavailableError,
    StoreVersionError,
)

if TYPE_CHECKING:
    import psycopg

#: The version of the tables this durably writes; ``MIGRATIONS[v]`` moves v to v + 1.
DDL_VERSION = 1
MIGRATIONS: dict[int, list[str]] = {}

_CREATE = [
    'CREATE TABLE {kv} (tbl text COLLATE "C" NOT NULL, k bytea NOT NULL, '
    "v bytea NOT NULL, PRIMARY KEY (tbl, k))",
    "CREATE TABLE {version} (version integer NOT NULL)",
    "INSERT INTO {version} (version) VALUES ({ddl})",
]


def lock_key(purpose: str, schema: str) -> int:
    """A signed 64-bit advisory-lock key for ``purpose`` in ``schema``."""
    digest = hashlib.sha256(f"durably:{purpose}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def describe(dsn: str) -> str:
    """Where a DSN points, for messages: host, port, database and user, no password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception as exc:
        raise ConfigurationError(
            f"the PostgreSQL DSN does not parse ({exc}); give a URI "
            "(postgresql://user:password@host:port/database) or libpq's key=value form"
        ) from None
    host = str(parts.get("host") or "localhost")
    port = f":{parts['port']}" if parts.get("port") else ""
    user = f" as {parts['user']}" if parts.get("user") else ""
    return f"database {parts.get('dbname') or '(default)'!s} on {host}{port}{user}"


def prepare(
    conn: psycopg.Connection[Any], schema: str | None, *, create: bool, where: str
) -> tuple[str, str]:
    """Make (or migrate) durably's tables; return the schema they are in, and it quoted."""
    from psycopg import sql

    with conn.transaction():
        if schema is None:
            found = conn.execute("SELECT current_schema()").fetchone()
            schema = None if found is None else found[0]
            if schema is None:
                raise StoreError(
                    f"the PostgreSQL {where} has no schema to put durably's tables in "
                    "(its search_path names none that exists); pass schema= or fix search_path"
                )
        quoted = sql.Identifier(schema).as_string(conn)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("schema", schema),))
        names = {"kv": f"{quoted}.durably_kv", "version": f"{quoted}.durably_schema"}
        row = conn.execute("SELECT to_regclass(%s)", (names["version"],)).fetchone()
        if row is None or row[0] is None:
            if not create:
                raise StoreNotFoundError(
                    f"there is no durably store in the PostgreSQL {where} (no durably "
                    f"tables in schema {schema!r}). Check the DSN for a typo; a "
                    "durably.Client opens only an existing store unless given create=True "
                    "(a worker's Engine creates its store when it first opens it)"
                )
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
            for statement in _CREATE:
                conn.execute(statement.format(ddl=DDL_VERSION, **names))
            return schema, quoted
        _migrate(conn, names, schema, where)
    return schema, quoted


def _migrate(conn: psycopg.Connection[Any], names: dict[str, str], schema: str, where: str) -> None:
    row = conn.execute(f"SELECT max(version) FROM {names['version']}").fetchone()
    version = 0 if row is None or row[0] is None else int(row[0])
    if version > DDL_VERSION:
        raise StoreVersionError(
            f"the durably store in the PostgreSQL {where} (schema {schema!r}) has table "
            f"version {version}; this durably knows version {DDL_VERSION}. Upgrade "
            "durably to open it (nothing was changed)"
        )
    if version < 1:
        raise StoreError(
            f"the durably_schema table in the PostgreSQL {where} (schema {schema!r}) holds "
            "no version: it was not made by durably, or was emptied; restore it from a "
            "backup or drop durably's tables to start a new store"
        )
    while version < DDL_VERSION:
        for statement in MIGRATIONS[version]:
            conn.execute(statement.format(**names))
        version += 1
        conn.execute(f"UPDATE {names['version']} SET version = %s", (version,))


def failure(exc: Exception, doing: str, where: str) -> StoreError:
    """The ``StoreError`` a psycopg error stands for, ``doing`` saying what failed."""
    import psycopg
    from psycopg import errors

    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, errors.DiskFull | errors.OutOfMemory):
        return StoreFullError(
            f"the PostgreSQL {where} is out of space or memory while {doing} ({detail}): "
            "nothing of it was acknowledged; free space on the server and retry"
        )
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return StoreError(
            f"the PostgreSQL {where} is read-only (a standby?) and refused {doing}; point "
            "the DSN at the primary server"
        )
    if isinstance(exc, errors.InsufficientPrivilege):
        return StoreError(
            f"the PostgreSQL {where} refused {doing} ({detail}): grant the user the right "
            "to create tables in, read and write the store's schema"
        )
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailableError(
            f"the PostgreSQL {where} cannot be reached while {doing} ({detail}); nothing of "
            "it was acknowledged. Check that the server runs and that the DSN (host, port, "
            "database, user, password) is right; the store reconnects at its next use"
        )
    return StoreError(f"the PostgreSQL {where} failed while {doing}: {detail}")
