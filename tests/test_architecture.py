"""The package's layering, read from its source: no import cycle anywhere in entrgi/, the ground floor
(bookkeeping/) imports nothing above it, and the core never imports an edge (the entrypoints, the
config layer, the reports, the testbed). Every import that runs counts, also one inside a function;
those under ``if TYPE_CHECKING:`` (annotations only) do not."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EDGES = ("entrgi.run", "entrgi.train", "entrgi.from_config", "entrgi.config_store", "entrgi.report",
         "entrgi.reporting", "entrgi.costs", "entrgi.testbed", "entrgi.__main__")
CORE = ("entrgi.bookkeeping", "entrgi.sampling", "entrgi.methods", "entrgi.models", "entrgi.evaluation",
        "entrgi.training", "entrgi.errors", "entrgi.registry")


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
            yield from (n for body in child.orelse for n in [body, *runtime_nodes(body)])
            continue
        yield child
        yield from runtime_nodes(child)


def import_graph() -> dict[str, set[str]]:
    """Each module of entrgi/ -> the modules of entrgi/ it imports (``from a import b``: ``a.b`` when that
    is a module, else ``a``)."""
    modules = {module_name(p): p for p in (ROOT / "entrgi").rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in runtime_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                             for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_graph_skips_annotation_only_imports():
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\n"
                     "def f():\n    import c\n")
    assert {a.name for n in runtime_nodes(tree) if isinstance(n, ast.Import) for a in n.names} == {"b", "c"}


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_entrgi():
    assert cycles(import_graph()) == []


def under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_bookkeeping_is_the_ground_floor():
    graph = import_graph()
    upward = {(m, d) for m, deps in graph.items() if under(m, ["entrgi.bookkeeping"]) for d in deps
              if not under(d, ["entrgi.bookkeeping", "entrgi.errors"]) and d != "entrgi"}
    assert upward == set()


def test_the_core_imports_no_edge():
    graph = import_graph()
    upward = {(m, d) for m, deps in graph.items() if under(m, CORE) for d in deps if under(d, EDGES)}
    assert upward == set()
