"""The documentation builds without warnings, and every Python example in it runs.

How examples are run (the convention every page in ``docs/`` and the README follows):

- Every fenced block opened with ```` ```python ```` is an example. Other languages
  (``bash``, ``console``, ``text``) are not run.
- The blocks of one page run **in order, in one namespace**, in a fresh temporary
  directory as the working directory: a later block may use what an earlier one defined,
  and a relative store path such as ``"./app.durably"`` lands in that directory.
- A block containing top-level ``await`` / ``async with`` / ``async for`` is run as the
  body of an async function under ``trio.run`` with virtual time
  (``trio.testing.MockClock(autojump_threshold=0)``): a one-hour sleep takes
  milliseconds. Each such block is its own ``trio.run``, so an engine opened with
  ``async with`` in one block is closed at its end; a later block cannot use it.
- A block that calls ``trio.run(main)`` itself gets the same virtual clock when it passes
  none, so a page can show the real program (``trio.run(main)``) and still run here fast.
- Under virtual time every ``LmdbStore`` commits inline (``inline=True`` by default here):
  autojump would otherwise move the clock while a commit runs in a worker thread. This is
  the rule the testing guide gives users too; durability is unchanged.
- A block preceded by the HTML comment ``<!-- fragment -->`` (on the line before the
  fence, blank lines allowed; invisible in the rendered page) is an illustration that
  cannot run alone (it uses names the page does not define, or an engine from an earlier
  block). It is only compiled, so it must still be valid Python.

A failing example's traceback names the page and the line in the Markdown file.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from durably.stores import LmdbStore

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
FRAGMENT = "<!-- fragment -->"
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)")


@dataclass
class Block:
    line: int  # 1-based line of the first line of code in the Markdown file
    source: str
    fragment: bool


def extract(page: Path) -> list[Block]:
    """The ```python blocks of ``page``, with their position and fragment mark."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        start = i + 1
        end = start
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if opening["info"].lower() in ("python", "py"):
            before = i - 1
            while before >= 0 and not lines[before].strip():
                before -= 1
            fragment = before >= 0 and lines[before].strip() == FRAGMENT
            body = "\n".join(line[indent:] for line in lines[start:end])
            blocks.append(Block(start + 1, body, fragment))
        i = end + 1
    return blocks


def _compile(page: Path, block: Block) -> Any:
    # Leading newlines make tracebacks point at the line in the Markdown file.
    padded = "\n" * (block.line - 1) + block.source
    return compile(
        padded, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )


@pytest.fixture
def virtual_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """``trio.run`` with a MockClock unless the caller passes one; LMDB commits inline."""
    real_run = trio.run

    def run(fn: Callable[..., Any], *args: Any, clock: Any = None, **kwargs: Any) -> Any:
        if clock is None:
            clock = trio.testing.MockClock(autojump_threshold=0)
        return real_run(fn, *args, clock=clock, **kwargs)

    real_init = LmdbStore.__init__

    def init(self: LmdbStore, path: Any, **kwargs: Any) -> None:
        kwargs.setdefault("inline", True)
        real_init(self, path, **kwargs)

    monkeypatch.setattr(trio, "run", run)
    monkeypatch.setattr(LmdbStore, "__init__", init)
    yield run


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_examples_run(
    page: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    virtual_time: Callable[..., Any],
) -> None:
    blocks = extract(page)
    codes = [_compile(page, block) for block in blocks]  # every block must compile
    monkeypatch.chdir(tmp_path)
    # A real module, so that classes defined by an example resolve their annotations.
    module = types.ModuleType("__docs__")
    monkeypatch.setitem(sys.modules, "__docs__", module)
    namespace = module.__dict__
    for block, code in zip(blocks, codes, strict=True):
        if block.fragment:
            continue
        if code.co_flags & inspect.CO_COROUTINE:

            async def body(code: Any = code) -> None:
                await eval(code, namespace)

            virtual_time(body)
        else:
            exec(code, namespace)


def test_extract_understands_the_convention(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- fragment -->\n\n```python\nengine.y\n```\n"
        "```bash\nls\n```\n  ```py\n  z = 2\n  ```\n",
        encoding="utf-8",
    )
    blocks = extract(page)
    assert [(b.line, b.source, b.fragment) for b in blocks] == [
        (4, "x = 1", False),
        (10, "engine.y", True),
        (16, "z = 2", False),
    ]


def test_docs_build_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict``: broken links, nav entries or API references fail it."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]' (or '.[test]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("durably.Engine", "durably.Context", "durably.stores.LmdbStore"):
        assert f'id="{name}"' in api, f"{name} is missing from the API reference"
