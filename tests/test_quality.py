"""The code stays typed and lint-clean: mypy strict over the installed package layout,
ruff over everything. Part of the suite so that CI enforces it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _package_view(tmp: Path) -> Path:
    """A directory where ``durably`` and ``durably.stores`` sit as they are installed.

    The editable install maps the names with an import hook that type checkers do not
    follow, so mypy is pointed at this view (symlinks to the real files) instead.
    """
    pkg = tmp / "durably"
    pkg.mkdir()
    for item in (ROOT / "engine").iterdir():
        if item.suffix in (".py", ".typed") or (item / "__init__.py").exists():
            (pkg / item.name).symlink_to(item)
    (pkg / "stores").symlink_to(ROOT / "stores")
    return tmp


@pytest.mark.skipif(
    shutil.which("mypy") is None and not (Path(sys.prefix) / "bin/mypy").exists(),
    reason="mypy is not installed (pip install -e '.[test]')",
)
def test_mypy_strict(tmp_path: Path) -> None:
    view = _package_view(tmp_path)
    env = {**os.environ, "MYPYPATH": str(view)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "-p",
            "durably",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


_SOURCES = [d for d in ("engine", "stores", "tests", "benchmarks") if (ROOT / d).is_dir()]


def test_ruff_clean() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *_SOURCES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
