"""The build backend (pyproject.toml): setuptools, plus an editable install type checkers see.

Everything is setuptools' ``build_meta`` except ``build_editable``. For our layout
(``engine/`` installs as ``durably``, ``stores/`` as ``durably.stores``) setuptools makes an
editable install an import hook, which mypy and other type checkers cannot follow. So after
setuptools has built its editable wheel, this adds a static path entry (a ``.pth`` line) to
a *view*: ``build/__editable__.durably-view/durably``, a directory of symlinks to the
package's sources (``core/`` and the other subpackages, ``stores/`` as ``durably.stores``,
each top-level module of ``engine/``). Python imports from the view, the checkers read it.

Edits show at once everywhere, as do new files in a subpackage or in ``stores/``. A module
added directly to ``engine/`` is importable at once (setuptools' hook finds it), and type
checkers see it after the next ``pip install -e .``. Where symlinks cannot be made, the
install is setuptools' alone. ``--config-settings editable_mode=...`` picks one of
setuptools' own modes instead, untouched.

Not imported by durably at run time; it ships in the sdist so that builds from it work.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import shutil
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

_setuptools: Any = importlib.import_module("setuptools.build_meta")

get_requires_for_build_wheel = _setuptools.get_requires_for_build_wheel
get_requires_for_build_sdist = _setuptools.get_requires_for_build_sdist
get_requires_for_build_editable = _setuptools.get_requires_for_build_editable
prepare_metadata_for_build_wheel = _setuptools.prepare_metadata_for_build_wheel
prepare_metadata_for_build_editable = _setuptools.prepare_metadata_for_build_editable
build_wheel = _setuptools.build_wheel
build_sdist = _setuptools.build_sdist

VIEW = Path("build", "__editable__.durably-view")
PTH = "__editable__.durably-view.pth"


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    name: str = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    if config_settings and {"editable_mode", "editable-mode"} & config_settings.keys():
        return name
    try:
        view = make_view(Path.cwd(), Path.cwd() / VIEW)
    except OSError as exc:  # no symlinks here (Windows without the privilege)
        print(f"durably: no type-checker view ({exc}); import hook only", file=sys.stderr)
        return name
    add_to_wheel(Path(wheel_directory, name), PTH, f"{view}\n")
    return name


def _package_dirs(root: Path) -> dict[str, Path]:
    """``[tool.setuptools] package-dir`` of pyproject.toml: package -> source folder."""
    with open(root / "pyproject.toml", "rb") as f:
        mapping = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
    return {pkg: (root / folder).resolve() for pkg, folder in mapping.items()}


def _is_source(entry: Path) -> bool:
    if entry.name == "__pycache__" or entry.name.startswith("."):
        return False
    if entry.is_dir():
        return (entry / "__init__.py").is_file()
    return entry.suffix in (".py", ".pyi") or entry.name == "py.typed"


def make_view(root: Path, view: Path) -> Path:
    """Build the view afresh under ``view``; returns the directory for the path entry."""
    dirs = _package_dirs(root)
    shutil.rmtree(view, ignore_errors=True)
    view.mkdir(parents=True)
    try:
        for pkg in sorted(dirs):
            if pkg.rpartition(".")[0] not in dirs:  # a top of the mapping
                _link(view / pkg.replace(".", "/"), pkg, dirs)
    except OSError:
        shutil.rmtree(view, ignore_errors=True)
        raise
    return view.resolve()


def _link(dest: Path, pkg: str, dirs: dict[str, Path]) -> None:
    """``dest`` shows package ``pkg``: one symlink to its folder, unless a subpackage of
    it lives elsewhere; then a real folder of symlinks, one per source entry."""
    inner = {p.rpartition(".")[2]: p for p in dirs if p.rpartition(".")[0] == pkg}
    if not inner:
        dest.symlink_to(dirs[pkg], target_is_directory=True)
        return
    dest.mkdir()
    for entry in sorted(dirs[pkg].iterdir()):
        if entry.name not in inner and _is_source(entry):
            (dest / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    for name, sub in inner.items():
        _link(dest / name, sub, dirs)


def add_to_wheel(wheel: Path, name: str, text: str) -> None:
    """Add a file at the root of ``wheel``, and its line to the wheel's RECORD."""
    data = text.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    line = f"{name},sha256={digest},{len(data)}\n".encode()
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for item in src.infolist():
            content = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                content = content.rstrip(b"\r\n") + b"\n" + line
            out.writestr(item, content)
        out.writestr(name, data)
    os.replace(tmp, wheel)
