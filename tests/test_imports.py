"""The project's import graph: no cycles anywhere, nothing imports a command, and each layer imports
only the layers below it (the table LAYER_RULES, as in ../shared/DESIGN.md).

Walks every module's `ast` (imports inside functions included, since they run too) instead of
importing anything, so the check is fast and needs none of the heavy dependencies.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "study", "search_spaces", "analysis", "benchmarks")
LAUNCHER = "study.launch"
# the commands: a parser and main(argv) each, never imported by anything
COMMANDS = frozenset({"study.launch", "study.train", "study.evaluate", "study.replicate", "study.reproduce",
                      "study.export", "study.featurenet"})
GROUND = frozenset({"study", "study.results", "study.store", "study.data", "study.optuna_storage",
                    "study.devices", "study.smoke", "study.repeat", "study.quality_gate"})
# study/'s packages, each a layer of its own (from the bottom up: see LAYER_RULES)
STUDY_PACKAGES = ("loop", "metrics", "engine", "followups", "launcher")
# layer -> the layers its modules may import (its own included)
LAYER_RULES = {
    "models": {"models"},
    "search_spaces": {"search_spaces", "models"},
    "ground": {"ground", "models"},
    "loop": {"loop", "ground", "models"},
    "metrics": {"metrics", "ground", "models"},
    "engine": {"engine", "loop", "metrics", "ground", "models", "search_spaces"},
    "followups": {"followups", "engine", "loop", "metrics", "ground", "models", "search_spaces"},
    "launcher": {"launcher", "followups", "engine", "loop", "metrics", "ground", "models", "search_spaces"},
    # the commands may call analysis (it imports only the ground and models, reads only files): `--family
    # both` ends with the report, in-process; the launcher's library below them may not
    "commands": {"launcher", "followups", "engine", "loop", "metrics", "ground", "models", "search_spaces",
                 "analysis"},
    "analysis": {"analysis", "ground", "models"},
    "benchmarks": {"benchmarks", "launcher", "followups", "engine", "loop", "metrics", "ground", "models",
                   "search_spaces", "analysis"},
}
# inside study/, Ray and Optuna are imported by these layers only (optuna_storage: the study's optuna.db,
# which the analysis reads too)
RAY_OPTUNA_LAYERS = {"engine", "followups", "launcher"}
RAY_OPTUNA_MODULES = {"study.optuna_storage"}


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module `import name` loads last (its longest project prefix), if any."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that `module` imports, anywhere in its body."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {_resolve(alias.name, modules) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..a import b
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                found.add(_resolve(f"{base}.{alias.name}", modules) if f"{base}.{alias.name}" in modules
                          else _resolve(base, modules))
    found.discard(None)
    return found - {module}


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan's algorithm),
    each as a path that starts and ends at the same module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError("a strongly connected component always holds a cycle")


def test_the_cycle_finder_finds_a_planted_cycle_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions_and_submodules():
    graph = import_graph()
    assert "study.launch" in graph and "study.engine.plan" in graph["study.launch"]
    assert "study.launcher.pipeline" in graph["study.launch"]  # imported inside main()
    assert "study.metrics.domain" in graph["study.metrics.evaluator"]  # `from study.metrics import domain`
    assert len(graph) > 30


def layer_of(module: str) -> str:
    if module in COMMANDS:
        return "commands"
    if module in GROUND:
        return "ground"
    parts = module.split(".")
    if parts[0] == "study":
        assert parts[1] in STUDY_PACKAGES, f"{module}: in no layer of LAYER_RULES"
        return parts[1]
    return parts[0]


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    return [f"{module} ({layer_of(module)}) imports {imported} ({layer_of(imported)})"
            for module, imports in sorted(graph.items()) for imported in sorted(imports)
            if layer_of(imported) not in LAYER_RULES[layer_of(module)]]


def test_each_layer_imports_only_the_layers_below_it():
    violations = layer_violations(import_graph())
    assert not violations, "layer rule broken:\n" + "\n".join(violations)


def test_the_layer_rules_catch_a_loop_that_reaches_into_the_metrics():
    graph = {"study.loop.trial": {"study.metrics.evaluator", "study.results"},
             "study.metrics.evaluator": set(), "study.results": set(),
             "analysis.report": {"study.engine.plan"}, "study.engine.plan": set()}
    assert layer_violations(graph) == [
        "analysis.report (analysis) imports study.engine.plan (engine)",
        "study.loop.trial (loop) imports study.metrics.evaluator (metrics)"]


def third_party_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_ray_and_optuna_are_imported_only_by_the_engine_the_followups_and_the_launcher():
    offenders = sorted(
        f"{name} imports {sorted(third_party_roots(path) & {'ray', 'optuna'})}"
        for name, path in project_modules().items()
        if name.split(".")[0] == "study" and layer_of(name) not in RAY_OPTUNA_LAYERS
        and name not in RAY_OPTUNA_MODULES and third_party_roots(path) & {"ray", "optuna"})
    assert not offenders, "\n".join(offenders)


def test_no_module_imports_a_command():
    importers = sorted(f"{name} -> {sorted(imported & COMMANDS)}" for name, imported in import_graph().items()
                       if imported & COMMANDS - {name})
    assert not importers, f"commands are not libraries; imported by {importers}"


def function_level_imports() -> list[str]:
    """Project imports inside a function body: `module:line` each."""
    found = []
    modules = project_modules()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    names = [node.module or ""]
                else:
                    continue
                if any(_resolve(n, modules) for n in names):
                    found.append(f"{name}:{node.lineno}")
    return sorted(set(found))


# the most project imports inside functions: each breaks a cycle or puts off a heavy import (Ray, torch)
# until bad input is refused, and says so; any other belongs at the top of its module
MAX_FUNCTION_LEVEL_IMPORTS = 12


def test_function_level_project_imports_are_few():
    found = function_level_imports()
    assert len(found) <= MAX_FUNCTION_LEVEL_IMPORTS, (
        f"{len(found)} project imports inside functions (at most {MAX_FUNCTION_LEVEL_IMPORTS}): move one to "
        "its module's top, where no cycle or layer rule forbids it:\n" + "\n".join(found))


def test_function_level_project_imports_say_why():
    """Each project import inside a function carries a comment saying why: on its line, or heading the
    block of imports it belongs to."""
    silent = []
    for place in function_level_imports():
        name, line = place.rsplit(":", 1)
        lines = project_modules()[name].read_text().splitlines()
        index = int(line) - 1
        reasoned = "#" in lines[index]
        while not reasoned and index > 0:
            index -= 1
            text = lines[index].strip()
            reasoned = text.startswith("#")
            if text and not reasoned and not text.startswith(("import ", "from ")):
                break
        if not reasoned:
            silent.append(place)
    assert not silent, "function-level project imports without a reason:\n" + "\n".join(silent)


def test_no_import_cycles_among_the_projects_modules():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


NAMED_PACKAGES = ("study", "models", "search_spaces", "analysis")  # benchmarks/ are scripts, not imported


def shared_module_names(paths: list[Path]) -> dict[str, list[str]]:
    """Module basename -> its files, for every name two or more files share (package __init__.py and
    __main__.py files aside)."""
    by_name: dict[str, list[str]] = {}
    for path in paths:
        if path.name not in ("__init__.py", "__main__.py"):
            by_name.setdefault(path.stem, []).append(path.relative_to(REPO_ROOT).as_posix())
    return {name: files for name, files in sorted(by_name.items()) if len(files) > 1}


def test_no_two_modules_share_a_name():
    """A name says which module it is: `export` was both a command and the engine's table writer."""
    paths = sorted(p for package in NAMED_PACKAGES for p in (REPO_ROOT / package).rglob("*.py"))
    assert len(paths) > 60
    shared = shared_module_names(paths)
    assert not shared, "module names used twice: " + "; ".join(f"{name}: {', '.join(files)}"
                                                             for name, files in shared.items())


def test_the_shared_name_check_finds_a_planted_pair():
    planted = [REPO_ROOT / "study" / "export.py", REPO_ROOT / "study" / "engine" / "export.py",
               REPO_ROOT / "study" / "engine" / "__init__.py", REPO_ROOT / "study" / "__init__.py"]
    assert shared_module_names(planted) == {"export": ["study/export.py", "study/engine/export.py"]}
