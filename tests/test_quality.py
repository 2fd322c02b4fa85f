"""The code stays typed and lint-clean: mypy strict over the installed package, ruff over
everything. Part of the suite so that CI enforces it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import durably

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    shutil.which("mypy") is None and not (Path(sys.prefix) / "bin/mypy").exists(),
    reason="mypy is not installed (pip install -e '.[test]')",
)
def test_mypy_strict(tmp_path: Path) -> None:
    """mypy sees the editable install as any installed package (a static path entry to a
    view of the sources, see engine/_build_backend.py): no MYPYPATH, run from outside."""
    if not Path(durably.__file__).resolve().is_relative_to(ROOT):
        pytest.skip("durably is not installed from this checkout (pip install -e .)")
    # The view has the top-level modules that engine/ had at install time.
    installed = Path(durably.__file__).parent
    new = [p.name for p in (ROOT / "engine").glob("*.py") if not (installed / p.name).exists()]
    assert not new, f"engine/{sorted(new)} came after the install: `pip install -e .` again"
    env = {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}
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
