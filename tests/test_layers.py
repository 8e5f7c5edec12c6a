"""The package's architecture, checked: imports point only down the layers, and there is no cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "embcli"

# Lower number = lower layer. A module may import its own layer or any lower one.
LAYERS = {
    "errors": 0,
    "env": 0,
    "choices": 0,
    "version": 0,
    "io": 1,
    "store": 2,
    "runtime": 3,
    "build": 4,
    "search": 4,
    "analysis": 5,  # analysis uses search's neighbours
    "api": 6,
    "integrations": 7,  # optional engines (ray): the API's users; commands import them lazily
    "commands": 8,
    "cli": 9,
    "__main__": 10,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Every embcli module's embcli imports, at any depth (function-level imports count too)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("embcli"):
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("embcli"))
        graph[name] = deps
    modules = set(graph)
    # Keep only real modules (``from embcli.io import streams`` names the module embcli.io.streams).
    return {m: {d for d in deps if d in modules and d != m} for m, deps in graph.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_imports_point_only_down_the_layers() -> None:
    wrong = []
    for module, deps in _imports().items():
        here = _layer(module)
        for dep in deps:
            there = _layer(dep)
            if here is not None and there is not None and there > here:
                wrong.append(f"{module} -> {dep}")
    assert not wrong, "imports that point up a layer:\n" + "\n".join(sorted(wrong))


def test_store_and_runtime_never_import_build() -> None:
    offenders = [
        f"{m} -> {d}"
        for m, deps in _imports().items()
        if m.startswith(("embcli.store", "embcli.runtime"))
        for d in deps
        if d.startswith("embcli.build")
    ]
    assert not offenders, offenders


def test_no_import_cycle() -> None:
    graph = _imports()
    # Package __init__ modules are namespaces here; a cycle through one is still a cycle.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_core_never_imports_typer_or_rich() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        if _layer(name) is None or _layer(name) >= LAYERS["commands"]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{name}: {n}" for n in names if n.split(".")[0] in ("typer", "rich", "click")]
    assert not offenders, offenders


def test_import_embcli_is_light_and_exports_the_api() -> None:
    code = (
        "import sys, embcli, embcli.integrations.ray\n"
        "heavy = [m for m in ('onnxruntime', 'tokenizers', 'usearch', 'typer', 'rich', 'ray', 'pyarrow')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "for name in embcli.__all__: getattr(embcli, name)\n"
        "print(len(embcli.__all__))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) >= 10
