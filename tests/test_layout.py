"""The house rules of the source layout, checked on the source itself (``ast``, no imports).

1. No import cycle among durably's modules, counting ``if TYPE_CHECKING:`` and
   function-level imports (an import that only a type checker or a late call sees is still
   a dependency, and hides the cycle until someone moves it).
2. The core (``engine/core/``) is pure: no trio, lmdb or croniter, and nothing of durably
   outside ``durably.core``.
3. No source file over ``MAX_FILE_LINES`` lines.
4. No function over ``MAX_FUNCTION_LINES`` lines, unless the line above it says why:
   ``# long: <reason>``.
5. ``durably.Engine`` shows only its documented API; the supervisor's machinery lives
   elsewhere.

The checkers below take a source tree as an argument so that they are tested themselves
(the ``test_checker_*`` tests, on small synthetic trees).
"""

from __future__ import annotations

import ast
import functools
import itertools
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent

# Source folder -> the dotted package it is installed as (pyproject.toml, package-dir).
PACKAGE_DIRS = {"engine": "durably", "stores": "durably.stores"}

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80
LONG_MARK = "# long:"

CORE_PACKAGE = "durably.core"
IMPURE_ROOTS = frozenset({"trio", "lmdb", "croniter"})

DOCUMENTED_ENGINE_API = frozenset(
    {
        "register",
        "signal_with_start",
        "read_published",
        "workflows",
        "start",
        "start_and_wait",
        "wait",
        "wait_settled",
        "get_execution",
        "list_executions",
        "cancel",
        "request_cancel",
        "signal",
        "subscribe",
        "audit",
        "describe",
        "operator",
        "operate",
        "schedule",
        "ensure_schedule",
        "pause_schedule",
        "resume_schedule",
        "update_schedule",
        "remove_schedule",
        "get_schedule",
        "list_schedules",
        "enqueue",
        "debounce",
        "queue_stats",
        "recover",
        "store",
        "clock",
        "last_recovery",
        "peak_live",
        "statistics",
        "drain",
    }
)

# The supervisor's machinery: names the actors, the committer and the scheduler call or
# read. They must not be on Engine, where users would take them for API.
FORBIDDEN_ENGINE_NAMES = frozenset(
    {
        "spawn",
        "should_park",
        "actor_exited",
        "finished",
        "published",
        "engine_failure",
        "live",
        "idle",
        "quarantine",
        "first_signal",
        "committer",
        "scheduler",
        "worker",
        "poll_interval",
    }
)


# --- the module map ---------------------------------------------------------------------


@attrs.frozen
class Module:
    name: str  # dotted, e.g. durably.core._codec
    path: Path
    is_package: bool  # an __init__.py

    @property
    def package(self) -> str:
        """The package relative imports are resolved against."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


def discover(root: Path, package_dirs: dict[str, str] = PACKAGE_DIRS) -> dict[str, Module]:
    """Every .py file under the source folders, by its dotted module name."""
    modules: dict[str, Module] = {}
    for folder, dotted in package_dirs.items():
        base = root / folder
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            name = ".".join([dotted, *parts])
            modules[name] = Module(name, path, is_package)
    return modules


def source_files(root: Path, package_dirs: dict[str, str] = PACKAGE_DIRS) -> list[Path]:
    return [m.path for m in discover(root, package_dirs).values()]


def _parse(path: Path) -> ast.Module:
    return _parse_text(path.read_text(encoding="utf-8"), str(path))


@functools.cache
def _parse_text(text: str, filename: str) -> ast.Module:
    # Keyed by the text, so a file edited in between (the synthetic trees) is parsed anew.
    return ast.parse(text, filename=filename)


# --- imports ----------------------------------------------------------------------------


@attrs.frozen
class Import:
    source: str  # the importing module
    target: str  # dotted name of what is imported: a module of ours, or an outside name
    line: int
    where: str  # "module", "TYPE_CHECKING" or "function"
    text: str  # the statement, for messages

    def describe(self, root: Path, modules: dict[str, Module]) -> str:
        path = modules[self.source].path
        try:
            shown = path.relative_to(root)
        except ValueError:
            shown = path
        extra = "" if self.where == "module" else f", {self.where}"
        return f"{shown}:{self.line}{extra}: {self.text}"


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _import_nodes(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement anywhere in the tree, with where it sits."""

    def walk(node: ast.AST, where: str) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, where
            return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            where = "function"
        if isinstance(node, ast.If) and _is_type_checking(node.test) and where == "module":
            for child in node.body:
                yield from walk(child, "TYPE_CHECKING")
            for child in node.orelse:
                yield from walk(child, where)
            return
        for child in ast.iter_child_nodes(node):
            yield from walk(child, where)

    yield from walk(tree, "module")


def _resolve_base(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.package.split(".")
    up = node.level - 1
    if up >= len(parts):
        raise ValueError(f"{module.name}: relative import beyond the top package")
    base = ".".join(parts[: len(parts) - up])
    return f"{base}.{node.module}" if node.module else base


def imports_of(module: Module, modules: dict[str, Module]) -> list[Import]:
    """What one module imports, resolved to dotted names.

    ``from package import name`` is the submodule ``package.name`` when that is a module
    of ours, else (an attribute) the package itself. The implicit import of parent
    packages is not counted.
    """
    found: list[Import] = []
    for node, where in _import_nodes(_parse(module.path)):
        text = ast.unparse(node)
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(module.name, alias.name, node.lineno, where, text))
            continue
        base = _resolve_base(module, node)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            target = sub if alias.name != "*" and sub in modules else base
            found.append(Import(module.name, target, node.lineno, where, text))
    return list(dict.fromkeys(found))  # `from x import a, b`: one import of x


def import_graph(modules: dict[str, Module]) -> dict[str, dict[str, list[Import]]]:
    """source -> target -> the imports that make the edge, among our modules only."""
    graph: dict[str, dict[str, list[Import]]] = {name: {} for name in modules}
    for module in modules.values():
        for imp in imports_of(module, modules):
            if imp.target in modules:
                graph[module.name].setdefault(imp.target, []).append(imp)
    return graph


def strongly_connected(graph: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = []
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        work.append((start, iter(sorted(graph[start]))))
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _shortest_cycle(
    graph: dict[str, dict[str, list[Import]]], start: str, members: set[str]
) -> list[str]:
    """The shortest path start -> ... -> start inside one component (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph[node]):
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{start} is on no cycle")


def find_cycles(modules: dict[str, Module]) -> list[list[str]]:
    """One shortest cycle through each module that is on a cycle, duplicates dropped.

    Each cycle is a chain that ends where it starts: ``[a, b, c, a]``.
    """
    return _cycles(import_graph(modules))


def _cycles(graph: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for component in strongly_connected(graph):
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        for member in component:
            cycle = _shortest_cycle(graph, member, set(component))
            ring = cycle[:-1]
            turn = ring.index(min(ring))
            key = tuple(ring[turn:] + ring[:turn])
            if key not in seen:
                seen.add(key)
                cycles.append([*key, key[0]])
    return cycles


def cycle_report(root: Path, modules: dict[str, Module]) -> str:
    graph = import_graph(modules)
    lines: list[str] = []
    for component in strongly_connected(graph):
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        lines.append(f"strongly connected: {', '.join(component)}")
    for cycle in _cycles(graph):
        lines.append("cycle: " + " -> ".join(cycle))
        for source, target in itertools.pairwise(cycle):
            first = graph[source][target][0]
            lines.append(f"    {source} -> {target}   ({first.describe(root, modules)})")
    return "\n".join(lines)


def impure_core_imports(modules: dict[str, Module]) -> list[Import]:
    """Imports in the core of trio/lmdb/croniter, or of durably outside the core."""
    bad: list[Import] = []
    for module in modules.values():
        if not _within(module.name, CORE_PACKAGE):
            continue
        for imp in imports_of(module, modules):
            root = imp.target.partition(".")[0]
            if root in IMPURE_ROOTS:
                bad.append(imp)
            elif root == "durably" and not _within(imp.target, CORE_PACKAGE):
                bad.append(imp)
    return bad


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# --- lengths ----------------------------------------------------------------------------


def long_files(paths: Iterable[Path], limit: int = MAX_FILE_LINES) -> list[tuple[Path, int]]:
    found = []
    for path in paths:
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > limit:
            found.append((path, count))
    return found


@attrs.frozen
class LongFunction:
    path: Path
    line: int
    name: str
    length: int


def long_functions(paths: Iterable[Path], limit: int = MAX_FUNCTION_LINES) -> list[LongFunction]:
    """Functions longer than the limit, unless marked ``# long: <reason>`` just above."""
    found = []
    for path in paths:
        lines = path.read_text(encoding="utf-8").splitlines()
        for node, qualname in _functions(_parse(path)):
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if length <= limit:
                continue
            top = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if any(_says_why(lines, n - 1) for n in {top, node.lineno}):
                continue
            found.append(LongFunction(path, node.lineno, qualname, length))
    return found


def _says_why(lines: list[str], number: int) -> bool:
    """Whether line ``number`` (1-based) is a ``# long: <reason>`` comment."""
    text = lines[number - 1].strip() if number >= 1 else ""
    return text.startswith(LONG_MARK) and bool(text[len(LONG_MARK) :].strip())


def _functions(
    tree: ast.AST, prefix: str = ""
) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node, prefix + node.name
            yield from _functions(node, f"{prefix}{node.name}.<locals>.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


# --- a class's public surface -----------------------------------------------------------


def class_surface(modules: dict[str, Module], module_name: str, class_name: str) -> set[str]:
    """Public names of a class, with those inherited from durably's own base classes."""
    names: set[str] = set()
    _collect_surface(modules, module_name, class_name, names, set())
    return {name for name in names if not name.startswith("_")}


def _collect_surface(
    modules: dict[str, Module],
    module_name: str,
    class_name: str,
    names: set[str],
    visited: set[tuple[str, str]],
) -> None:
    located = _find_class(modules, module_name, class_name, set())
    if located is None or located in visited:
        return
    visited.add(located)
    where, node = located[0], _class_node(modules[located[0]], located[1])
    assert node is not None
    names.update(_own_names(node))
    for base in node.bases:
        if isinstance(base, ast.Subscript):  # Generic[T], Base[T]
            base = base.value
        if isinstance(base, ast.Name):
            _collect_surface(modules, where, base.id, names, visited)
        elif isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name):
            target = _imported_module(modules, where, base.value.id)
            if target is not None:
                _collect_surface(modules, target, base.attr, names, visited)


def _class_node(module: Module, class_name: str) -> ast.ClassDef | None:
    for node in _parse(module.path).body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return node
    return None


def _find_class(
    modules: dict[str, Module], module_name: str, name: str, seen: set[tuple[str, str]]
) -> tuple[str, str] | None:
    """(module, class name) where ``name`` as seen from ``module_name`` is defined."""
    if (module_name, name) in seen or module_name not in modules:
        return None
    seen.add((module_name, name))
    module = modules[module_name]
    if _class_node(module, name) is not None:
        return module_name, name
    for node in _parse(module.path).body:
        if not isinstance(node, ast.ImportFrom):
            continue
        base = _resolve_base(module, node)
        for alias in node.names:
            if (alias.asname or alias.name) != name:
                continue
            if f"{base}.{alias.name}" in modules:
                return None  # a module, not a class
            return _find_class(modules, base, alias.name, seen)
    return None


def _imported_module(modules: dict[str, Module], module_name: str, alias: str) -> str | None:
    """The module of ours bound to ``alias`` in ``module_name`` (``from . import x``)."""
    module = modules[module_name]
    for node in _parse(module.path).body:
        if isinstance(node, ast.Import):
            for a in node.names:
                if (a.asname or a.name) == alias and a.name in modules:
                    return a.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_base(module, node)
            for a in node.names:
                if (a.asname or a.name) == alias and f"{base}.{a.name}" in modules:
                    return f"{base}.{a.name}"
    return None


def _own_names(node: ast.ClassDef) -> set[str]:
    """Methods, properties, class-level assignments and ``self.x = ...`` in any method."""
    names: set[str] = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(item.name)
            if item.args.posonlyargs or item.args.args:
                first = (item.args.posonlyargs or item.args.args)[0].arg
                names.update(_attributes_set(item, first))
        elif isinstance(item, ast.Assign):
            for target in item.targets:
                names.update(_bound_names(target))
        elif isinstance(item, ast.AnnAssign | ast.AugAssign):
            names.update(_bound_names(item.target))
    return names


def _bound_names(target: ast.expr) -> set[str]:
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, ast.Tuple | ast.List):
        return {name for elt in target.elts for name in _bound_names(elt)}
    return set()


def _attributes_set(function: ast.AST, self_name: str) -> set[str]:
    names: set[str] = set()
    for sub in ast.walk(function):
        if (
            isinstance(sub, ast.Attribute)
            and isinstance(sub.ctx, ast.Store)
            and isinstance(sub.value, ast.Name)
            and sub.value.id == self_name
        ):
            names.add(sub.attr)
        elif (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Name)
            and sub.func.id == "setattr"
            and len(sub.args) >= 2
            and isinstance(sub.args[0], ast.Name)
            and sub.args[0].id == self_name
            and isinstance(sub.args[1], ast.Constant)
            and isinstance(sub.args[1].value, str)
        ):
            names.add(sub.args[1].value)
    return names


def undocumented_in_docs(names: Iterable[str], docs: Path) -> list[str]:
    """Names that no page under ``docs`` mentions as ``engine.x``, ``Engine.x`` or ``x(``."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(docs.rglob("*.md")))
    missing = []
    for name in sorted(names):
        pattern = rf"\b[eE]ngine\.{re.escape(name)}\b|\b{re.escape(name)}\("
        if not re.search(pattern, text):
            missing.append(name)
    return missing


# --- the rules, on the real tree --------------------------------------------------------


def _rel(path: Path) -> Path:
    return path.relative_to(ROOT)


def _engine_surface() -> set[str]:
    return class_surface(discover(ROOT), "durably._engine", "Engine")


def test_tree_is_where_the_rules_expect_it() -> None:
    modules = discover(ROOT)
    assert {"durably", "durably._engine", "durably.core", "durably.stores"} <= modules.keys()
    assert _class_node(modules["durably._engine"], "Engine") is not None


def test_no_import_cycles() -> None:
    modules = discover(ROOT)
    cycles = find_cycles(modules)
    assert not cycles, "import cycles among durably's modules:\n" + cycle_report(ROOT, modules)


def test_core_is_pure() -> None:
    modules = discover(ROOT)
    bad = impure_core_imports(modules)
    assert not bad, (
        "durably.core imports trio/lmdb/croniter or durably outside the core:\n"
        + "\n".join(f"  {imp.source}: {imp.describe(ROOT, modules)}" for imp in bad)
    )


def test_no_long_files() -> None:
    found = long_files(source_files(ROOT))
    assert not found, f"source files over {MAX_FILE_LINES} lines:\n" + "\n".join(
        f"  {_rel(path)}: {count} lines" for path, count in found
    )


def test_no_long_functions() -> None:
    found = long_functions(source_files(ROOT))
    assert not found, (
        f"functions over {MAX_FUNCTION_LINES} lines (split them, or say why on the line "
        f"above: '{LONG_MARK} <reason>'):\n"
        + "\n".join(f"  {_rel(f.path)}:{f.line} {f.name}: {f.length} lines" for f in found)
    )


def test_engine_shows_only_documented_api() -> None:
    extra = _engine_surface() - DOCUMENTED_ENGINE_API
    assert not extra, (
        f"public names on durably.Engine that are not its documented API: {sorted(extra)} "
        "(make them private, move them off Engine, or document them and add them to "
        "DOCUMENTED_ENGINE_API)"
    )


def test_engine_has_no_supervisor_machinery() -> None:
    present = _engine_surface() & FORBIDDEN_ENGINE_NAMES
    assert not present, (
        f"durably.Engine still has {sorted(present)}: the supervisor owns them, not the "
        "engine's public face"
    )


def test_documented_engine_api_is_in_the_docs() -> None:
    listed = _engine_surface() & DOCUMENTED_ENGINE_API
    missing = undocumented_in_docs(listed, ROOT / "docs")
    assert not missing, (
        f"DOCUMENTED_ENGINE_API lists {missing}, but no page in docs/ mentions them "
        "(as engine.<name>, Engine.<name> or <name>(): document them or drop them)"
    )


def test_documented_and_forbidden_do_not_overlap() -> None:
    assert not DOCUMENTED_ENGINE_API & FORBIDDEN_ENGINE_NAMES


# --- the checkers, on synthetic trees ---------------------------------------------------


def _tree(root: Path, files: dict[str, str]) -> dict[str, Module]:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return discover(root)


def _targets(modules: dict[str, Module], name: str) -> set[str]:
    return {imp.target for imp in imports_of(modules[name], modules)}


def test_checker_maps_files_to_dotted_names(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "engine/__init__.py": "",
            "engine/_engine.py": "",
            "engine/core/__init__.py": "",
            "engine/core/_codec.py": "",
            "stores/__init__.py": "",
            "stores/_lmdb.py": "",
        },
    )
    assert set(modules) == {
        "durably",
        "durably._engine",
        "durably.core",
        "durably.core._codec",
        "durably.stores",
        "durably.stores._lmdb",
    }
    assert modules["durably.core"].package == "durably.core"
    assert modules["durably.core._codec"].package == "durably.core"


def test_checker_resolves_relative_imports(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "engine/__init__.py": "from ._engine import Engine\nfrom .core import _codec\n",
            "engine/_engine.py": "from . import _cli\nfrom .core import Thing\n",
            "engine/_cli.py": "import durably.core._codec\nfrom durably import stores\n",
            "engine/core/__init__.py": "from . import _codec\nfrom ._errors import Oops\n",
            "engine/core/_codec.py": "from ._errors import Oops\nfrom .. import _engine\n",
            "engine/core/_errors.py": "from . import *\n",
            "engine/runtime/__init__.py": "",
            "engine/runtime/_actor.py": (
                "from ..core import _codec, Thing\nfrom ..core._errors import Oops\n"
                "from ..stores._lmdb import LmdbStore\nimport trio.testing\n"
            ),
            "stores/__init__.py": "from ..core._errors import Oops\nfrom ._lmdb import L\n",
            "stores/_lmdb.py": "from . import _layout\nfrom .. import core\n",
        },
    )
    assert _targets(modules, "durably") == {"durably._engine", "durably.core._codec"}
    assert _targets(modules, "durably._engine") == {"durably._cli", "durably.core"}
    assert _targets(modules, "durably._cli") == {"durably.core._codec", "durably.stores"}
    assert _targets(modules, "durably.core") == {"durably.core._codec", "durably.core._errors"}
    assert _targets(modules, "durably.core._codec") == {"durably.core._errors", "durably._engine"}
    assert _targets(modules, "durably.core._errors") == {"durably.core"}
    assert _targets(modules, "durably.runtime._actor") == {
        "durably.core._codec",
        "durably.core",
        "durably.core._errors",
        "durably.stores._lmdb",
        "trio.testing",
    }
    assert _targets(modules, "durably.stores") == {"durably.core._errors", "durably.stores._lmdb"}
    # _layout is no module of this tree: the name is an attribute of the package.
    assert _targets(modules, "durably.stores._lmdb") == {"durably.stores", "durably.core"}


def test_checker_ignores_implicit_parent_packages(tmp_path: Path) -> None:
    # durably/__init__ imports _engine; _engine imports durably.core._x, which implicitly
    # runs durably/__init__: no cycle is counted for that.
    modules = _tree(
        tmp_path,
        {
            "engine/__init__.py": "from ._engine import Engine\n",
            "engine/_engine.py": "from .core._x import X\nimport durably.core._y\n",
            "engine/core/__init__.py": "",
            "engine/core/_x.py": "",
            "engine/core/_y.py": "",
        },
    )
    assert find_cycles(modules) == []


def test_checker_accepts_a_tree_without_cycles(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "engine/__init__.py": "from ._engine import Engine\nfrom .core._a import A\n",
            "engine/_engine.py": "from .core._a import A\nfrom .runtime._r import R\n",
            "engine/core/__init__.py": "",
            "engine/core/_a.py": "from ._b import B\n",
            "engine/core/_b.py": "import attrs\n",
            "engine/runtime/__init__.py": "",
            "engine/runtime/_r.py": "from ..core import _a\nfrom ..core._b import B\n",
        },
    )
    assert find_cycles(modules) == []
    assert cycle_report(tmp_path, modules) == ""


def test_checker_catches_a_cycle_through_type_checking(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "engine/__init__.py": "",
            "engine/_engine.py": "from .runtime._actor import Actor\n",
            "engine/runtime/__init__.py": "",
            "engine/runtime/_actor.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from .._engine import Engine\n"
            ),
        },
    )
    assert find_cycles(modules) == [
        ["durably._engine", "durably.runtime._actor", "durably._engine"]
    ]
    report = cycle_report(tmp_path, modules)
    assert "durably._engine -> durably.runtime._actor -> durably._engine" in report
    assert "engine/runtime/_actor.py:3, TYPE_CHECKING: from .._engine import Engine" in report


def test_checker_catches_cycles_through_functions_and_self_loops(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "engine/__init__.py": "",
            "engine/_a.py": "from . import _b\n",
            "engine/_b.py": "from . import _c\n",
            "engine/_c.py": "def late():\n    from ._a import thing\n",
            "engine/_self.py": (
                "import typing\nif typing.TYPE_CHECKING:\n    import durably._self\n"
            ),
        },
    )
    assert find_cycles(modules) == [
        ["durably._a", "durably._b", "durably._c", "durably._a"],
        ["durably._self", "durably._self"],
    ]
    report = cycle_report(tmp_path, modules)
    assert "strongly connected: durably._a, durably._b, durably._c" in report
    assert "engine/_c.py:2, function: from ._a import thing" in report


def test_checker_reports_each_cycle_of_a_component(tmp_path: Path) -> None:
    # a <-> b and a <-> c: one component, two shortest cycles.
    modules = _tree(
        tmp_path,
        {
            "engine/__init__.py": "",
            "engine/_a.py": "from . import _b, _c\n",
            "engine/_b.py": "from . import _a\n",
            "engine/_c.py": "from . import _a\n",
        },
    )
    assert find_cycles(modules) == [
        ["durably._a", "durably._b", "durably._a"],
        ["durably._a", "durably._c", "durably._a"],
    ]


def test_checker_catches_an_impure_core(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "engine/__init__.py": "",
            "engine/_engine.py": "import trio\n",  # outside the core: fine
            "engine/core/__init__.py": "from ._ok import x\n",
            "engine/core/_ok.py": "import attrs, orjson\nfrom . import _bad\nfrom ._bad import y\n",
            "engine/core/_bad.py": (
                "from typing import TYPE_CHECKING\n"
                "import trio.lowlevel\n"
                "if TYPE_CHECKING:\n"
                "    from ..runtime._context import Context\n"
                "def f():\n"
                "    import croniter\n"
                "    from durably.stores import Store\n"
                "    from lmdb import Environment\n"
                "    from durably.core import _ok\n"
            ),
            "engine/runtime/__init__.py": "",
            "engine/runtime/_context.py": "",
            "stores/__init__.py": "",
        },
    )
    bad = impure_core_imports(modules)
    assert {(imp.source, imp.target, imp.where) for imp in bad} == {
        ("durably.core._bad", "trio.lowlevel", "module"),
        ("durably.core._bad", "durably.runtime._context", "TYPE_CHECKING"),
        ("durably.core._bad", "croniter", "function"),
        ("durably.core._bad", "durably.stores", "function"),
        ("durably.core._bad", "lmdb", "function"),
    }


def test_checker_finds_long_files(tmp_path: Path) -> None:
    short, long = tmp_path / "short.py", tmp_path / "long.py"
    short.write_text("x = 1\n" * 600)
    long.write_text("x = 1\n" * 601)
    assert long_files([short, long]) == [(long, 601)]


def _function(name: str, body_lines: int, indent: str = "") -> str:
    body = "".join(f"{indent}    x = {i}\n" for i in range(body_lines))
    return f"{indent}def {name}():\n{body}"


def test_checker_finds_long_functions_and_honours_the_long_mark(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text(
        _function("fits", 79)  # 80 lines in all
        + _function("too_long", 80)
        + "# long: one table of cases, clearer in one place\n"
        + _function("excused", 120)
        + "# long: a decorated one\n@decorator\n@other(1)\n"
        + _function("excused_decorated", 120)
        + "# long:\n"  # says no why
        + _function("no_reason", 90)
        + "@decorator\n# long: right above the def is fine too\n"
        + _function("excused_below_decorator", 90)
        + "@decorator\n# long: between decorators does not count\n@other\n"
        + _function("misplaced", 90)
        + "# long: not directly above\n\n"
        + _function("gap", 90)
        + "class C:\n"
        + "    # long: the mark works in classes too\n"
        + _function("excused_method", 90, indent="    ")
        + _function("method", 81, indent="    ")
        + "    async def outer():\n"
        + _function("inner", 85, indent="        ")
    )
    lines = path.read_text().splitlines()

    def line_of(name: str) -> int:
        return next(n for n, line in enumerate(lines, 1) if f"def {name}(" in line)

    found = {(f.name, f.line, f.length) for f in long_functions([path])}
    assert found == {
        ("too_long", line_of("too_long"), 81),
        ("no_reason", line_of("no_reason"), 91),
        ("misplaced", line_of("misplaced"), 91),
        ("gap", line_of("gap"), 91),
        ("C.method", line_of("method"), 82),
        ("C.outer", line_of("outer"), 87),
        ("C.outer.<locals>.inner", line_of("inner"), 86),
    }


def test_checker_collects_a_class_surface_with_inherited_names(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "engine/__init__.py": "",
            "engine/_engine.py": (
                "from .runtime import _mixins\n"
                "from .runtime._base import Base as Renamed\n"
                "import attrs\n"
                "class Local:\n"
                "    def local_method(self): ...\n"
                "class Engine(Renamed, _mixins.Mixin, Local, attrs.Foreign):\n"
                "    limit = 3\n"
                "    typed: int = 4\n"
                "    _private = 5\n"
                "    def __init__(me, store):\n"
                "        me.store = store\n"
                "        me._hidden = 1\n"
                "        me.a, me.b = 1, 2\n"
                "        other.not_mine = 1\n"
                "    @property\n"
                "    def clock(self): ...\n"
                "    async def start(self):\n"
                "        def helper():\n"
                "            self.late = 1\n"
                "        setattr(self, 'dynamic', 2)\n"
                "    @staticmethod\n"
                "    def make(): ...\n"
            ),
            "engine/runtime/__init__.py": "from ._base import Base\n",
            "engine/runtime/_base.py": (
                "from typing import Generic\n"
                "from . import Base2\n"
                "class Base(Base2, Generic[T]):\n"
                "    def base_method(self):\n"
                "        self.base_attr = 1\n"
                "    def _base_private(self): ...\n"
            ),
            "engine/runtime/_mixins.py": (
                "from ._base2 import Base2\nclass Mixin:\n    def mixed(self): ...\n"
            ),
            "engine/runtime/_base2.py": "class Base2:\n    spawn = None\n",
        },
    )
    # durably.runtime re-exports nothing named Base2: the lookup of _base's Base2 through
    # `from . import Base2` follows durably.runtime's imports, and finds nothing there.
    assert class_surface(modules, "durably._engine", "Engine") == {
        "limit",
        "typed",
        "store",
        "a",
        "b",
        "clock",
        "start",
        "late",
        "dynamic",
        "make",
        "base_method",
        "base_attr",
        "mixed",
        "local_method",
    }
    # Once the package re-exports Base2, the chain reaches it.
    (tmp_path / "engine/runtime/__init__.py").write_text(
        "from ._base import Base\nfrom ._base2 import Base2\n"
    )
    assert "spawn" in class_surface(modules, "durably._engine", "Engine")


def test_checker_accepts_an_engine_with_only_its_api(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "engine/__init__.py": "",
            "engine/_engine.py": (
                "from .runtime._supervisor import Supervisor\n"
                "class Engine:\n"
                "    def __init__(self, store):\n"
                "        self.store = store\n"
                "        self._supervisor = Supervisor()\n"
                "    def register(self, definition): ...\n"
                "    async def start(self, workflow): ...\n"
                "    @property\n"
                "    def clock(self): ...\n"
            ),
            "engine/runtime/__init__.py": "",
            "engine/runtime/_supervisor.py": (
                "class Supervisor:\n    def spawn(self): ...\n    live = {}\n"
            ),
        },
    )
    surface = class_surface(modules, "durably._engine", "Engine")
    assert surface == {"store", "register", "start", "clock"}
    assert surface <= DOCUMENTED_ENGINE_API
    assert not surface & FORBIDDEN_ENGINE_NAMES


def test_checker_finds_names_missing_from_docs(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("Call `engine.start(...)`, then `Engine.wait`.\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/b.md").write_text("```python\nawait recover()\nx = engine.storefront\n```\n")
    names = ["start", "wait", "recover", "store", "describe"]
    assert undocumented_in_docs(names, tmp_path) == ["describe", "store"]
