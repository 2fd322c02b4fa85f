"""Opening a store by path or DSN (``Engine(path)``, ``Client("postgresql://...")``): a
path that cannot hold a store is refused with a durably error that says what to change,
before anything is created, instead of a raw ``OSError`` from deep inside the opening.

Rules of this module:

- A face creates only the store's own directory, never its parents: a typo in a parent
  (``/var/lib/shpo/shop.durably``) is an error, not a new directory tree.
- A client opens only an existing store unless it is told to create one, so that a typo
  does not start an empty store that no worker serves (a database without durably's
  tables, likewise).
- A text that begins with ``postgresql://`` or ``postgres://`` is a PostgreSQL DSN and
  opens a ``PostgresStore``; anything else is a directory for an ``LmdbStore``.
- Whether other processes write a store (so its worker drains the inbox and a client's
  writes carry inbox entries), and how its worker lock is taken, is asked here only
  (:func:`shared`, :func:`try_worker_lock`), whatever kind of store it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from durably.stores import LmdbStore, Store
from durably.stores._flock import try_lock

from ..core._errors import ConfigurationError, StoreNotFoundError, StorePathError

#: How a PostgreSQL DSN given where a store path may be begins (libpq's URI schemes).
DSN_SCHEMES = ("postgresql://", "postgres://")


def is_dsn(arg: Any) -> bool:
    """Whether ``arg`` is a PostgreSQL URI rather than a store directory."""
    return isinstance(arg, str) and arg.startswith(DSN_SCHEMES)


def store_path(arg: Any, face: str) -> Path | str:
    """The path a face was given, checked for what needs no file system: a string or an
    ``os.PathLike``, not empty, without NUL. A PostgreSQL DSN is returned as it is."""
    if is_dsn(arg):
        return str(arg)
    if not isinstance(arg, (str, os.PathLike)):
        raise StorePathError(
            f"durably.{face} takes a store directory (a str or a pathlib.Path) or a Store, "
            f"not a value of type {type(arg).__qualname__}"
        )
    text = os.fspath(arg)
    if not isinstance(text, str) or not text or "\x00" in text:
        raise StorePathError(
            f"durably.{face} was given the store path {text!r}: pass a non-empty path of a "
            "directory, as text without NUL (e.g. './app.durably')"
        )
    return Path(text)


def open_store(
    path: Path | str, *, face: str, lock: bool | Literal["shared"], create: bool
) -> Store:
    """The ``LmdbStore`` at ``path``, after :func:`check_path`, or the ``PostgresStore`` of
    a DSN; any ``OSError`` the opening still meets (a race, a full directory) is a
    :class:`StorePathError` naming the path."""
    if is_dsn(path):
        return open_postgres(str(path), lock=lock, create=create)
    path = Path(path)
    check_path(path, face=face, create=create)
    try:
        return LmdbStore(path, lock=lock)
    except OSError as exc:
        raise StorePathError(
            f"cannot open the store at {path}: {exc.strerror or exc}; check that the "
            "directory exists and that this user may read and write it"
        ) from exc


def open_postgres(dsn: str, *, lock: bool | Literal["shared"], create: bool) -> Store:
    """The ``PostgresStore`` of ``dsn``; without psycopg, an error that says what to install."""
    try:
        from durably.stores._postgres import PostgresStore
    except ImportError as exc:
        raise ConfigurationError(
            f"a PostgreSQL store needs psycopg 3, which is not installed ({exc}); install "
            "durably[postgres] (pip install 'durably[postgres]')"
        ) from exc
    return PostgresStore(dsn, lock=lock, create=create)


def shared(store: Store) -> bool:
    """Whether processes other than this one may write ``store``: one at a path (its
    clients), or in a database server. Its worker then drains the inbox, and a client's
    writes carry inbox entries for it."""
    return getattr(store, "path", None) is not None or hasattr(store, "try_worker_lock")


def try_worker_lock(store: Store) -> Any:
    """Take the worker lock of a :func:`shared` store for a moment (close the result to
    release it), or None when a worker holds it."""
    path = getattr(store, "path", None)
    if path is not None:
        return try_lock(Path(path))
    return store.try_worker_lock()  # type: ignore[attr-defined]


def where(store: Store) -> str:
    """The store, named for a message: its path, or its server and database."""
    return str(getattr(store, "path", None) or getattr(store, "where", None) or "the store")


def check_path(path: Path, *, face: str, create: bool) -> None:
    """Refuse a path that cannot hold a store (or, unless ``create``, holds none)."""
    try:
        _check(path, face, create)
    except StorePathError:  # StoreNotFoundError is an OSError too
        raise
    except OSError as exc:  # stat itself failed: a parent this user may not enter
        raise StorePathError(
            f"cannot look at the store path {path}: {exc.strerror or exc}; check the "
            "permissions of its parent directories"
        ) from exc


def _check(path: Path, face: str, create: bool) -> None:
    if path.exists():
        if not path.is_dir():
            raise StorePathError(
                f"the store path {path} is a file, not a directory: a store is a directory "
                "(durably creates it); pass a path that does not exist yet or a store's "
                "directory"
            )
        if not create and not (path / "data.mdb").exists():
            raise _not_found(path, face, "the directory holds no data.mdb")
        _check_access(path, "open the store directory")
        return
    parent = path.parent
    state = (
        None if parent.is_dir() else "is not a directory" if parent.exists() else "does not exist"
    )
    if not create:
        raise _not_found(path, face, "nothing is there" if state is None else f"its parent {state}")
    if state is not None:
        raise StorePathError(
            f"cannot create the store {path}: its parent {parent} {state}. Check the path "
            "for a typo, or create the parent first: durably creates only the store's own "
            "directory"
        )
    _check_access(parent, f"create the store directory {path} in")


def _check_access(directory: Path, doing: str) -> None:
    if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
        raise StorePathError(
            f"no permission to {doing} {directory} (this process runs as uid "
            f"{os.geteuid()}): give this user read, write and search access to it, or run "
            "as the user that owns the store"
        )


def _not_found(path: Path, face: str, why: str) -> StoreNotFoundError:
    return StoreNotFoundError(
        f"there is no durably store at {path} ({why}). Check the path for a typo; a "
        f"durably.{face} opens only an existing store unless given create=True (a worker's "
        "Engine creates its store when it first opens it)"
    )
