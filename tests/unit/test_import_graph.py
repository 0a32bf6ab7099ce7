"""The layers of ``baton`` point one way: its import graph has no cycle, and the Redis
queue knows nothing of the database. Read from the source with ``ast``, so a lazy
import inside a function counts as much as one at the top (only imports under
``if TYPE_CHECKING:`` are left out: they never run)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import baton

PACKAGE = Path(baton.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except the bodies of ``if TYPE_CHECKING:`` blocks."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """Module -> the ``baton`` modules it imports (``from baton import x`` names the
    module ``baton.x`` when such a module exists)."""
    paths = {
        _module_name(path): path
        for path in PACKAGE.rglob("*.py")
        if "migrations" not in path.relative_to(PACKAGE).parts
    }
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
                targets += [f"{node.module}.{alias.name}" for alias in node.names]
            graph[name] |= {target for target in targets if target in paths and target != name}
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for target in graph[stack.pop()]:
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def test_the_graph_is_read_from_real_imports() -> None:
    # Guards the reader itself: a graph that found no edges would prove nothing.
    graph = import_graph()
    assert "baton.repository" in graph["baton.runtime"]
    assert "baton.records" in graph["baton.queue"]
    assert "baton.scheduling" in graph["baton.reconcile"]


def test_the_finder_sees_a_cycle_when_there_is_one() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_baton_has_no_import_cycle() -> None:
    cycle = _find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_redis_queue_does_not_reach_the_database_code() -> None:
    reached = _reachable(import_graph(), "baton.queue")
    assert not reached & {"baton.repository", "baton.models", "baton.database"}, reached


def test_the_contracts_do_not_depend_on_the_settings() -> None:
    assert "baton.settings" not in _reachable(import_graph(), "baton.contracts")


def test_leaf_records_import_no_other_baton_module() -> None:
    assert import_graph()["baton.records"] == set()
