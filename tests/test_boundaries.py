"""The three layers keep their boundaries: the core imports no Ray, the analysis side
neither Ray nor torch, and loading a config no torch; no module uses a private name of
Ray Tune."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "addray"


def _imported(code: str) -> list[str]:
    probe = (f"import sys, json; {code}; print(json.dumps(sorted({{m.split('.')[0] for m in "
             f"sys.modules}} & {{'ray', 'torch', 'optuna'}})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


@pytest.mark.slow
@pytest.mark.parametrize("code,allowed", [
    ("import addray.core.config, addray.core.tokens, addray.core.strata", []),
    ("from addray.core.config import load_config; load_config('configs/phase1_tiny.yaml')", []),
    ("import addray.analysis.report, addray.analysis.fits, addray.report", []),
    ("import addray.export, addray.tb_events", []),
    ("import addray.sweep.search_space, addray.sweep.options, addray.sweep.cli", []),
    ("import addray.core.trainer, addray.core.verify, addray.train, addray.verify", ["torch"]),
])
def test_layer_imports(code, allowed):
    assert _imported(code) == allowed


def test_every_core_module_is_free_of_ray():
    modules = [f"addray.core.{p.stem}" for p in (PACKAGE / "core").glob("*.py")]
    assert "ray" not in _imported("import " + ", ".join(modules))


def _private_tune_names(tree: ast.AST) -> list[str]:
    """Attributes starting with '_' read off anything, and private names imported from a
    ray module (our own underscore names are defined in addray and read as self._x)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ray"):
            found += [a.name for a in node.names if a.name.startswith("_")]
            if any(part.startswith("_") for part in (node.module or "").split(".")):
                found.append(node.module)
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(node.attr)
    return found


def test_no_module_reads_a_private_name_of_another_library():
    # the scheduler and the recorder use Tune's public interface only: a private
    # attribute (trial._x, bracket._rungs, ...) or a ray._private import fails here
    for path in sorted(PACKAGE.rglob("*.py")):
        assert _private_tune_names(ast.parse(path.read_text())) == [], path


def test_the_check_itself_finds_private_names():
    tree = ast.parse("from ray.tune.schedulers import _x\nimport ray\nb = trial._rungs\n"
                     "from ray._private import services\n")
    assert _private_tune_names(tree) == ["_x", "ray._private", "_rungs"]


def _module_imports() -> dict[str, set[str]]:
    """addray module -> the addray modules it imports anywhere (inside functions too)."""
    names = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts): p
             for p in PACKAGE.rglob("*.py")}
    names = {n.removesuffix(".__init__"): p for n, p in names.items()}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                base = node.module
                deps |= {f"{base}.{a.name}" for a in node.names} | {base}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in names and d != name}
    return graph


def test_no_import_cycle_not_even_a_lazy_one():
    graph = _module_imports()
    # a package's __init__ is not a dependency of its modules' own imports here
    graph = {m: {d for d in deps if graph.get(d) is not None and d not in ("addray",
             "addray.core", "addray.sweep", "addray.analysis")} for m, deps in graph.items()}
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(node):]
                                                                 + [node]))
        if node in done:
            return
        for dep in sorted(graph[node]):
            visit(dep, path + [node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])
