"""A user's application type-checks (``mypy --strict``) against durably as installed.

Twice: against the editable install of the README (``pip install -e .``, the environment
these tests run in), and against a wheel installed into a fresh environment. mypy runs
from a directory outside the checkout, without ``MYPYPATH``, so it finds durably only the
way it finds any installed package. A second file with deliberate mistakes must have them
reported, line by line: proof that mypy sees durably's types rather than an ``Any``.

The editable install is a static path entry to a view of symlinks
(``engine/_build_backend.py``); the last test checks that view on a small tree.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import durably

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None,
    reason="mypy is not installed (pip install -e '.[test]')",
)

APP = '''\
"""A user's application: a workflow with a plain and an asyncio step, on every host."""

import asyncio

import trio

import durably
import durably.aio
import durably.sync
from durably.stores import MemoryStore


def double(n: int) -> int:
    return 2 * n


async def label(n: int) -> str:
    await asyncio.sleep(0)
    return f"#{n}"


@durably.workflow("labelled")
async def labelled(ctx: durably.Context, n: int) -> str:
    text = await ctx.step("label", label, n)
    suffix = await ctx.wait_for_signal("suffix", step_id="suffix")
    return text + str(suffix)


async def on_asyncio(path: str) -> str:
    async with durably.aio.Engine(path, workflows=[labelled]) as engine:
        eid = await engine.start(labelled, 1)
        return await engine.wait(eid, workflow=labelled)


def from_a_thread(path: str) -> str:
    with durably.sync.Client(path, workflows=[labelled]) as client:
        return client.start_and_wait(labelled, 2).data


@durably.workflow("double")
async def twice(ctx: durably.Context, n: int) -> int:
    doubled = await ctx.step("double", double, n)
    return doubled


@durably.workflow("fan")
async def fan(ctx: durably.Context, n: int) -> int:
    doubled: list[int] = await ctx.gather(*[ctx.step(f"d{i}", double, i) for i in range(n)])
    child: int = await ctx.child(twice, n, step_id="kid")
    handle: durably.ChildHandle[int] = await ctx.start_child(twice, n, step_id="kid2")
    later: int = await handle.result()
    if ctx.patched("more"):
        await ctx.publish("sum", sum(doubled))
    return sum(doubled) + child + later


async def main() -> durably.Result[int]:
    async with durably.Engine(MemoryStore(), workflows=[twice, fan]) as engine:
        return await engine.start_and_wait(twice, 21)


if __name__ == "__main__":
    print(trio.run(main).data)
'''

# Every line marked "# error" must be reported, and no other line. Were durably an Any
# (an install mypy cannot see, with the import error silenced), none of them would be.
WRONG = """\
import durably
from app import double, twice


@durably.workflow("wrong")
async def wrong(ctx: durably.Context, n: int) -> str:
    return await ctx.step("double", double, n)  # error: the step returns an int


async def use(engine: durably.Engine) -> None:
    result = await engine.start_and_wait(twice, 21)
    reveal_type(result.data)
    await engine.start_and_wait(twice, "21")  # error: the input is an int
    await engine.start_and_wiat(twice, 21)  # error: no such method
    durably.no_such_name  # error: no such name


@durably.workflow("wrong-kid")
async def wrong_kid(ctx: durably.Context, n: int) -> str:
    return await ctx.child(twice, n, step_id="kid")  # error: the child returns an int


async def hosts(engine: durably.aio.Engine, client: durably.sync.Client) -> None:
    await engine.start(twice, "21")  # error: the input is an int
    text: str = await engine.wait("x", workflow=twice)  # error: the result is an int
    client.start(twice, "21")  # error: the input is an int
"""


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module: the dependencies (trio, attrs, ...) are analysed once."""
    return tmp_path_factory.mktemp("mypy-cache")


def _user_app(where: Path) -> Path:
    where.mkdir(exist_ok=True)
    assert not where.resolve().is_relative_to(ROOT), "the application must live outside"
    (where / "app.py").write_text(APP)
    (where / "wrong.py").write_text(WRONG)
    (where / "mypy.ini").write_text("[mypy]\n")  # no user or project settings leak in
    return where


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("MYPYPATH", "PYTHONPATH")}


def _mypy(
    app: Path, file: str, cache: Path, python: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``mypy --strict file`` in ``app``, for the environment of ``python`` (default: ours)."""
    target = [] if python is None else ["--python-executable", str(python)]
    cmd = [sys.executable, "-m", "mypy", "--strict", "--config-file", "mypy.ini"]
    cmd += ["--cache-dir", str(cache), *target, file]
    return subprocess.run(cmd, cwd=app, env=_env(), capture_output=True, text=True, check=False)


def _check_user_app(app: Path, cache: Path, python: Path | None = None) -> None:
    ok = _mypy(app, "app.py", cache, python)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    wrong = _mypy(app, "wrong.py", cache, python)
    out = wrong.stdout + wrong.stderr
    assert wrong.returncode == 1, out
    reported = {int(n) for n in re.findall(r"^wrong\.py:(\d+): error:", out, re.MULTILINE)}
    marked = {i for i, line in enumerate(WRONG.splitlines(), 1) if "# error" in line}
    assert reported == marked, out
    assert re.search(r'Revealed type is "(builtins\.)?int"', out), out


def _run(python: Path | str, *args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [str(python), *args], cwd=cwd, env=_env(), capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def test_user_app_type_checks_against_the_editable_install(
    tmp_path: Path, mypy_cache: Path
) -> None:
    if not Path(durably.__file__).resolve().is_relative_to(ROOT):
        pytest.skip("durably is not installed from this checkout (pip install -e .)")
    app = _user_app(tmp_path)
    _check_user_app(app, mypy_cache)
    assert _run(sys.executable, "app.py", cwd=app) == "42"


def _builds_offline() -> bool:
    """Whether this environment can build the wheel itself: setuptools with its own
    ``bdist_wheel`` (70.1 and later), or an older one and the ``wheel`` package."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, minor = (int(x) for x in re.findall(r"\d+", version)[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.mark.slow
def test_user_app_type_checks_against_a_wheel(tmp_path: Path, mypy_cache: Path) -> None:
    # Built from a copy of what the build reads: the checkout's build/ stays untouched, and
    # no stale file from it can get into the wheel. Without build isolation where this
    # environment can build (fast, offline); else pip fetches setuptools, as `pip install`.
    src = tmp_path / "src"
    for folder in ("engine", "stores"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    isolation = ["--no-build-isolation"] if _builds_offline() else []
    _run(*pip, "wheel", "--no-deps", *isolation, "-w", str(tmp_path / "dist"), str(src))
    (wheel,) = (tmp_path / "dist").glob("durably-*.whl")

    # A fresh environment, the wheel in its site-packages. Its dependencies (trio, attrs,
    # ...) are ours, through a path entry to our site-packages: installing them anew would
    # take the network and most of a minute. Python does not read .pth files in a path
    # entry, so our editable durably stays out: the only durably there is the wheel's.
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv))
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"))
    _run(*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel))
    ours = dict.fromkeys(sysconfig.get_path(kind) for kind in ("purelib", "platlib"))
    (site / "_deps.pth").write_text("".join(f"{path}\n" for path in ours))

    app = _user_app(tmp_path / "app")
    found = _run(python, "-c", "import durably; print(durably.__file__)")
    assert Path(found).is_relative_to(site), found
    _check_user_app(app, mypy_cache, python)
    assert _run(python, "app.py", cwd=app) == "42"


def test_editable_view_shows_new_files(tmp_path: Path) -> None:
    """The view that the editable install puts on the path: ``durably`` as installed, by
    symlinks, so that files added later to a subpackage or to ``stores/`` show at once."""
    backend = pytest.importorskip("durably._build_backend", reason="needs setuptools")
    root = tmp_path / "project"
    files = {
        "pyproject.toml": textwrap.dedent("""\
            [tool.setuptools]
            package-dir = { "durably" = "engine", "durably.stores" = "stores" }
            """),
        "engine/__init__.py": "from . import stores as stores\n",
        "engine/py.typed": "",
        "engine/core/__init__.py": "",
        "engine/notes.txt": "",
        "stores/__init__.py": "",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    view = backend.make_view(root, root / "build" / "view")
    pkg = view / "durably"
    assert sorted(p.name for p in pkg.iterdir()) == ["__init__.py", "core", "py.typed", "stores"]
    assert all(p.is_symlink() for p in pkg.iterdir())

    (root / "engine/core/_later.py").write_text("X = 1\n")
    (root / "stores/_later.py").write_text("Y = 2\n")
    env = {**_env(), "PYTHONPATH": str(view)}
    code = "import durably.core._later as a, durably.stores._later as b; print(a.X + b.Y)"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout) == (0, "3\n"), proc.stderr
    # Made afresh each time: a file gone from the sources is gone from the view.
    (root / "engine/py.typed").unlink()
    assert not (backend.make_view(root, root / "build" / "view") / "durably/py.typed").exists()
