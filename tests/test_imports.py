"""The package's import graph, read from the sources with ``ast``: no circle, and a generic
layer that reaches no backend's internals.

An edge A -> B is an ``import`` statement in A that names B, at module level or inside a
function: an import deferred into a function still closes a circle, only later (the
circle ``_checks -> _numba.rnn -> backends -> _checks`` was one). Imports under ``if
TYPE_CHECKING:`` never run and are left out, as are the modules that ``backends`` and
``fastrnn/__init__`` import by name through ``importlib``.
"""
import ast
from pathlib import Path

import fastrnn

PACKAGE = Path(fastrnn.__file__).parent
BACKENDS = ("_numba", "_cython", "reference")          # the subpackages that are backends


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_nodes(tree: ast.Module):
    """The import statements of ``tree``, each with whether it runs at import time."""
    def visit(nodes, top):
        for node in nodes:
            if isinstance(node, ast.If) and is_type_checking(node.test):
                yield from visit(node.orelse, top)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node, top
            else:
                inner = top and not isinstance(node, FUNCTIONS)
                yield from visit(ast.iter_child_nodes(node), inner)
    return visit(tree.body, True)


def imported_modules(name: str, node) -> set[str]:
    """The fastrnn modules that the import statement ``node`` in module ``name`` loads."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        if node.level:
            is_package = MODULES[name].name == "__init__.py"
            base = name.split(".")
            base = base[:len(base) - node.level + is_package]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module
        # ``from . import x`` imports the module fastrnn.x when there is one.
        targets = [source] + [f"{source}.{alias.name}" for alias in node.names]
    found = set()
    for target in targets:
        # Importing a.b.c runs a/__init__ and a/b/__init__ too, but the packages that
        # hold ``name`` itself have been imported before it.
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in MODULES and not f"{name}.".startswith(f"{prefix}."):
                found.add(prefix)
    return found


def import_graph() -> dict[str, dict[str, bool]]:
    """module -> {imported module: whether some import of it runs at import time}."""
    graph = {}
    for name, path in MODULES.items():
        edges = graph[name] = {}
        for node, top in import_nodes(ast.parse(path.read_text(), str(path))):
            for target in imported_modules(name, node):
                edges[target] = edges.get(target, False) or top
    return graph


def find_cycle(graph) -> list[str] | None:
    """One cycle of ``graph`` as [m0, m1, ..., m0], or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for succ in sorted(graph.get(node, ())):
            if state.get(succ) == "open":
                return stack[stack.index(succ):] + [succ]
            if succ not in state:
                cycle = visit(succ)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def describe(cycle, graph) -> str:
    return " -> ".join(
        f"{a} ({'module level' if graph[a][b] else 'in a function'})"
        for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert graph["fastrnn._checks"]["fastrnn.params"]                  # from .x import y
    assert {"fastrnn._numba.rnn", "fastrnn._numba.stack"} <= set(
        graph["fastrnn._numba.kernels"])                                # from . import x
    assert graph["fastrnn.cli"]["fastrnn.model"] is False               # in a function
    source = ("if TYPE_CHECKING:\n    import a\nelse:\n    import b\n"
              "def f():\n    import c\n")
    assert [(node.names[0].name, top) for node, top in import_nodes(ast.parse(source))] == \
        [("b", True), ("c", False)]
    assert find_cycle({"a": {"b": True}, "b": {"c": False}, "c": {"b": True}}) == \
        ["b", "c", "b"]


def test_no_import_circle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, f"import circle: {describe(cycle, graph)}"


def test_generic_layer_imports_no_backend_internals():
    """Only the registry, backends.py, knows the backends, and it imports them by name
    when asked; the rest of the top-level package runs on whichever backend is built."""
    graph = import_graph()
    generic = [name for name, path in MODULES.items()
               if path.parent == PACKAGE and path.name != "__init__.py"
               and name != "fastrnn.backends"]
    bad = {name: sorted(t for t in graph[name] if t.split(".")[1] in BACKENDS)
           for name in generic}
    assert not {name: targets for name, targets in bad.items() if targets}
