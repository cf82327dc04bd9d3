"""The package's layering, read from the source with `ast` (nothing is imported): no import
circle in unillm/ (module-level and function-level imports alike), and the bench's own rules
(small modules, a schema that knows no kind, public helpers only across modules, jobs below
the kinds that use them).

An edge A -> B is any ``import``/``from ... import`` of B in A, wherever it is written: a
function-level import is a circle waiting for the first call that takes it. ``from P import
n`` counts as an import of P.n when that is a module, else of P. Packages' implicit imports of
their parents are not edges (every module would then be in a circle with its package).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import unillm

ROOT = Path(unillm.__file__).resolve().parent
BENCH = "unillm.bench"
MAX_LINES = 450


def _modules(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package's __init__)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return found


def _imports(name: str, path: Path, is_pkg: bool, known: Iterable[str]) -> set[str]:
    known = set(known)
    package = name if is_pkg else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    out.add(sub)
                elif target in known:
                    out.add(target)
    out.discard(name)
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its source."""
    mods = _modules(root)
    return {name: _imports(name, path, is_pkg, mods) for name, (path, is_pkg) in mods.items()}


def components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        comp.append(member)
                        if member == node:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One concrete circle, [a, b, ..., a], per component of modules that import each other."""
    return [_circle(graph, comp) for comp in components(graph)]


def _circle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest circle from the component's first module back to it, inside the component."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    nxt.append(child)
        frontier = nxt
    return component  # unreachable for a strongly connected component


def _shown(found: list[list[str]], graph: dict[str, set[str]]) -> str:
    lines = []
    for circle in found:
        members = next(c for c in components(graph) if circle[0] in c)
        lines.append(f"{' -> '.join(circle)}   (all of {', '.join(members)} import each other)")
    return "\n".join(lines)


def test_the_cycle_finder_finds_a_circle_through_a_function_level_import(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def x():\n    from . import c\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("from pkg import a, b\n")
    graph = import_graph(pkg)
    assert graph["pkg.d"] == {"pkg.a", "pkg.b"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    (pkg / "c.py").write_text("")
    assert cycles(import_graph(pkg)) == []


def test_no_import_circle_touches_the_bench():
    graph = import_graph()
    found = [c for c in cycles(graph)
             if any(m.startswith(BENCH) for comp in components(graph) if c[0] in comp for m in comp)]
    assert not found, "import circles through unillm.bench:\n" + _shown(found, graph)


def test_no_import_circle_anywhere_in_unillm():
    """The whole package, every engineer's part of it: fails on any circle."""
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import circles in unillm:\n" + _shown(found, graph)


def test_no_module_is_over_the_size_limit():
    """Small modules with one job each: none of unillm's (or the llama.cpp plugin's) modules
    grows past MAX_LINES; a feature that would push one past it gets a module of its own."""
    plugin = ROOT.parent / "plugins" / "unillm-llamacpp" / "src"
    files = [*ROOT.rglob("*.py"), *plugin.rglob("*.py")]
    big = {str(p.relative_to(ROOT.parent)): n for p in files
           if (n := len(p.read_text("utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def _bench_imports(module: str) -> set[str]:
    return {m for m in import_graph()[f"{BENCH}.{module}"] if m.startswith(BENCH + ".")}


def test_the_schema_and_the_jobs_sit_below_every_kind():
    kinds = {f"{BENCH}.{k}" for k in ("latency", "throughput", "serve", "tune", "compare")}
    # the schema knows no kind and writes no plot
    assert _bench_imports("results") <= {f"{BENCH}.machine"}
    # plots know no kind of result beyond their own figures; tune's are in tune_outputs
    assert not _bench_imports("plots") & (kinds | {f"{BENCH}.tune_outputs", f"{BENCH}.outputs"})
    # what a worker measures lives below the kinds, which import it
    assert not (_bench_imports("jobs") | _bench_imports("worker")) & kinds
    for kind in ("latency", "throughput", "tune"):
        assert f"{BENCH}.jobs" in _bench_imports(kind)
    from unillm.bench import jobs, latency

    assert latency.fixed_length_params is jobs.fixed_length_params


def test_no_bench_module_imports_another_ones_private_names():
    mods = _modules()
    private = []
    for name, (path, _) in mods.items():
        if not name.startswith(BENCH):
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                private += [f"{name}: {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_") and a.name != "__version__"]
    assert not private, "private names imported across modules:\n" + "\n".join(private)
