"""The package's import graph, read from the source with `ast` (top-level AND function-level imports): no cycles.
Run it as a script to print the graph's size and every cycle: `python tests/test_import_graph.py`."""
import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "laclip_lite"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, here: str, modules: set[str], is_package: bool) -> set[str]:
    """The package modules `tree` imports, wherever the import statement sits (`from a import b` counts a.b when b
    is a module, else a; relative imports resolved against `here`), with the packages above each (their
`__init__` runs first), except those `here` itself sits in."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".") if is_package else here.split(".")[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:     # `import laclip_lite.data.x` -> that module
                name = name.rpartition(".")[0]
            while name:                             # ... and the packages above it, whose __init__ runs first
                if name in modules and name != here and not here.startswith(name + "."):
                    out.add(name)
                name = name.rpartition(".")[0]
    return out


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    return {m: imported(ast.parse(p.read_text()), m, modules, p.name == "__init__.py") for m, p in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted: every import cycle."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100     # the whole package was read
    assert cycles(graph) == [], "import cycles (top-level and function-level imports)"


def test_a_cycle_is_found(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")          # function-level, relative
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("from pkg import a\n")                               # into the cycle, not on it
    graph = import_graph(pkg)
    assert graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.d"] == {"pkg.a"}
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}             # a package's __init__ runs before its modules
    assert cycles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


if __name__ == "__main__":
    g = import_graph()
    found = cycles(g)
    print(f"{len(g)} modules, {sum(map(len, g.values()))} import edges, {len(found)} cycles")
    for c in found:
        print("  cycle:", " <-> ".join(c))
