"""The layout keeps its promises: no import cycles between rootsand's modules (lazy imports included)."""

import ast
import os

import rootsand

PACKAGE = os.path.dirname(rootsand.__file__)


def _imports() -> dict[str, set[str]]:
    modules = {}
    for name in os.listdir(PACKAGE):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(PACKAGE, name)) as f:
            tree = ast.parse(f.read())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "rootsand":
                deps |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rootsand."):
                deps.add(node.module.split(".")[1])
        modules[name[:-3]] = deps - {name[:-3]}
    return modules


def test_no_import_cycles():
    modules = _imports()
    cycles = set()

    def walk(start, module, path):
        for dep in modules.get(module, ()):
            if dep == start:
                cycles.add(" -> ".join(path + [start]))
            elif dep not in path and dep in modules:
                walk(start, dep, path + [dep])

    for module in modules:
        walk(module, module, [module])
    assert sorted(cycles) == []


def test_model_imports_no_other_stage():
    assert _imports()["model"] <= {"errors"}
