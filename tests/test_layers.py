"""The package follows DESIGN.md's data flow: a module imports only its own layer or the layers below it, and
no set of modules imports itself round a cycle. Function-level imports count as much as top-level ones."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mtml"

# Lowest first. The flow: shared types -> io -> data -> model -> losses -> cluster -> config -> predict -> eval
# -> train -> tables (paper-table reproductions) -> cli.
LAYERS = [
    ("mtml.errors", "mtml.scene", "mtml.labels"),
    ("mtml.io",),
    ("mtml.data",),
    ("mtml.model",),
    ("mtml.losses",),
    ("mtml.cluster",),
    ("mtml.config",),
    ("mtml.predict",),
    ("mtml.eval",),
    ("mtml.train",),
    ("mtml.tables",),
    ("mtml.cli",),
]
# The package root only re-exports the public API, lazily (module __getattr__); the compiled extension has no
# Python imports.
EXEMPT = {"mtml", "mtml._meanshift_ext"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_modules(name: str, path: Path, known: set) -> set:
    """Every mtml module that ``path`` imports anywhere in its body (``from a import b`` counts ``a.b`` when
    that is a module, else ``a``)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_package else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
    return {m for m in found if m in known and m != name}


def layer_of(name: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{name} belongs to no layer: add it to LAYERS in tests/test_layers.py")


def import_graph() -> dict[str, set]:
    modules = all_modules()
    known = set(modules)
    return {name: imported_modules(name, path, known) - EXEMPT for name, path in modules.items() if name not in EXEMPT}


def test_every_import_follows_the_flow():
    wrong = [f"{src} (layer {layer_of(src)}) imports {dst} (layer {layer_of(dst)})"
             for src, dsts in import_graph().items() for dst in sorted(dsts) if layer_of(dst) > layer_of(src)]
    assert not wrong, "imports against the data flow:\n" + "\n".join(wrong)


def find_cycle(graph: dict[str, set]) -> list | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_has_a_layer():
    for name in import_graph():
        layer_of(name)
