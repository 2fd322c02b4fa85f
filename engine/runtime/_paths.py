"""Opening a store by path (``Engine(path)``, ``Client(path)``): a path that cannot hold
a store is refused with a durably error that says what to change, before anything is
created, instead of a raw ``OSError`` from deep inside the opening.

Rules of this module:

- A face creates only the store's own directory, never its parents: a typo in a parent
  (``/var/lib/shpo/shop.durably``) is an error, not a new directory tree.
- A client opens only an existing store unless it is told to create one, so that a typo
  does not start an empty store that no worker serves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from durably.stores import LmdbStore

from ..core._errors import StoreNotFoundError, StorePathError


def store_path(arg: Any, face: str) -> Path:
    """The path a face was given, checked for what needs no file system: a string or an
    ``os.PathLike``, not empty, without NUL."""
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


def open_store(path: Path, *, face: str, lock: bool, create: bool) -> LmdbStore:
    """The ``LmdbStore`` at ``path``, after :func:`check_path`; any ``OSError`` the opening
    still meets (a race, a full directory) is a :class:`StorePathError` naming the path."""
    check_path(path, face=face, create=create)
    try:
        return LmdbStore(path, lock=lock)
    except OSError as exc:
        raise StorePathError(
            f"cannot open the store at {path}: {exc.strerror or exc}; check that the "
            "directory exists and that this user may read and write it"
        ) from exc


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
