"""MkDocs hook: lay out the installed package shape for the API reference.

The source tree maps ``durably`` to ``engine/`` and ``durably.stores`` to ``stores/``
(pyproject's ``package-dir``); griffe reads sources statically and looks for
``durably/stores`` inside ``engine/``. This builds ``build/docs-src/durably`` out of
symlinks (engine's files plus ``stores``) when MkDocs loads this hook: that is before the
mkdocstrings handler resolves its ``paths`` (it drops paths that do not exist yet). The
reference is read from the very files in the tree, without importing them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGE = ROOT / "build" / "docs-src"


def _lay_out() -> None:
    package = STAGE / "durably"
    if package.exists() or package.is_symlink():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    for source in (ROOT / "engine").iterdir():
        if source.suffix in (".py", ".typed"):
            (package / source.name).symlink_to(source)
        elif source.is_dir() and (source / "__init__.py").exists():  # core, runtime, ...
            (package / source.name).symlink_to(source, target_is_directory=True)
    (package / "stores").symlink_to(ROOT / "stores", target_is_directory=True)


_lay_out()
