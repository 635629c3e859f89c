"""The import graph, read with ``ast``: the packages' rules hold, and there are no circles.
docs/architecture.md draws the same packages and states the same rules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "surefoot"

# What each package may import besides itself, lowest first. A module's package is its first
# dotted part, except that an engine's own phases (``engines.NAME.phases``) are phases.
MAY_IMPORT: dict[str, set[str]] = {
    "base": set(),
    "config": {"base"},
    "store": {"base"},
    "proc": {"base"},
    "hosts": {"proc", "store", "config", "base"},
    "engines": {"hosts", "proc", "store", "config", "base"},
    "targets": {"engines", "hosts", "proc", "store", "config", "base"},
    "deploy": {"targets", "engines", "hosts", "proc", "store", "config", "base"},
    "cli": {"deploy", "targets", "engines", "hosts", "proc", "store", "config", "base", ""},
}
# Inside deploy: what a phase sees (api, gates, releases) and the phases never reach up to the
# pipeline or the runner; only the runner (and the CLI) reach the runner.
DEPLOY_BELOW_PIPELINE = ("deploy.api", "deploy.gates", "deploy.releases", "deploy.phases")
# Modules outside any package.
TOP = {"", "__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts).removesuffix("__init__").rstrip(".")


def imports() -> dict[str, set[str]]:
    modules = {module_name(p) for p in SOURCE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in SOURCE.rglob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "surefoot":
                base = node.module.removeprefix("surefoot").lstrip(".")
                for alias in node.names:  # `from surefoot.hosts import checks` imports a module
                    sub = f"{base}.{alias.name}".lstrip(".")
                    deps.add(sub if sub in modules else base)
            elif isinstance(node, ast.Import):
                deps |= {a.name.removeprefix("surefoot.") for a in node.names if a.name.startswith("surefoot.")}
        graph[module_name(path)] = deps - {module_name(path)}
    return graph


def is_phase(module: str) -> bool:
    return module.startswith("deploy.phases") or re.fullmatch(r"engines\.\w+\.phases", module) is not None


def package(module: str) -> str:
    """The package whose rule a module follows."""
    if is_phase(module):
        return "deploy"
    return module.split(".")[0]


def test_every_module_is_in_a_package() -> None:
    strays = [m for m in imports() if m not in TOP and package(m) not in MAY_IMPORT]
    assert not strays, f"modules outside the packages (add a rule here and in docs/architecture.md): {strays}"


def test_no_package_imports_what_its_rule_forbids() -> None:
    broken = []
    for module, deps in imports().items():
        if module in TOP:
            continue
        mine = package(module)
        for dep in deps:
            theirs = package(dep) if dep not in TOP else dep
            if theirs != mine and theirs not in MAY_IMPORT[mine]:
                broken.append(f"{module} ({mine}) imports {dep} ({theirs})")
    assert not broken, "\n".join(sorted(broken))


def test_the_phases_and_what_they_see_never_reach_the_pipeline_or_the_runner() -> None:
    broken = []
    for module, deps in imports().items():
        if not (module.startswith(DEPLOY_BELOW_PIPELINE) or is_phase(module)):
            continue
        for dep in deps:
            if dep.startswith(("deploy.run", "deploy.pipeline")) or (dep.startswith("deploy.phases")
                                                                      and not is_phase(module)):
                broken.append(f"{module} imports {dep}")
    assert not broken, "\n".join(sorted(broken))


def test_an_engine_is_its_own_package() -> None:
    """Engines stand side by side: none imports another's modules, except that an engine may
    build on compose (a swarm's manager builds and keeps images as a compose target does);
    nothing but the phase table's loader reaches an engine's own phases."""
    broken = []
    for module, deps in imports().items():
        for dep in deps:
            parts = dep.split(".")
            if parts[0] != "engines" or len(parts) < 2 or parts[1] in ("base", "api"):
                continue
            own = module.split(".")[:2] == parts[:2]
            if (is_phase(dep) and not own and not is_phase(module)) or (module.startswith("engines.") and not own and parts[1] != "compose" and len(module.split(".")) > 2):
                broken.append(f"{module} imports {dep}")
    assert not broken, "\n".join(sorted(broken))


def test_there_are_no_circles() -> None:
    graph = imports()
    circles = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    counter = [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        for dep in graph.get(node, ()):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not circles, circles


def test_only_proc_starts_processes() -> None:
    found = [module_name(path) for path in SOURCE.rglob("*.py")
             if re.search(r"^\s*(import subprocess|from subprocess import)", path.read_text(encoding="utf-8"), re.M)
             and not module_name(path).startswith("proc")]
    assert not found, found


def test_no_module_is_over_400_lines() -> None:
    long = {module_name(p): n for p in SOURCE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def _docker_argv(path: Path) -> list[str]:
    """Argument lists that run the docker CLI: a list or tuple display whose first word is
    ``docker`` (or ``*project.docker``), and ``sh -c`` scripts that run it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    scripts = {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
               and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
               for t in node.targets if isinstance(t, ast.Name)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.List, ast.Tuple)) or len(node.elts) < 2:
            continue
        first = node.elts[0]
        runs_docker = (isinstance(first, ast.Constant) and first.value == "docker") or (
            isinstance(first, ast.Starred) and ast.unparse(first.value).endswith(".docker"))
        if isinstance(first, ast.Constant) and first.value == "sh" and len(node.elts) >= 3:
            script = node.elts[2]
            text = script.value if isinstance(script, ast.Constant) else scripts.get(getattr(script, "id", ""), "")
            runs_docker = isinstance(text, str) and re.search(r"(^|[\s;|&(`$])docker\s", text) is not None
        if runs_docker:
            found.append(f"{module_name(path)}:{node.lineno}")
    return found


def test_docker_argv_is_built_only_by_the_builders() -> None:
    """Commands as data: every docker command line is built by an engine's argv module
    (pure functions, table-tested), never in an adapter's method or a phase."""
    found = [where for path in SOURCE.rglob("*.py")
             if path.name != "argv.py" and not module_name(path).startswith(("base.", "hosts.prereqs"))
             for where in _docker_argv(path)]
    assert not found, found


def test_a_phase_is_registered_in_one_place() -> None:
    """Adding a phase is its module and its row in names.PHASES: the pipeline's builder names
    no phase, and every row names a function that exists, on every engine it names."""
    from surefoot.base.names import PHASES
    from surefoot.deploy.pipeline import phase_function

    text = (SOURCE / "deploy" / "pipeline.py").read_text(encoding="utf-8")
    named = [row["name"] for row in PHASES if f'"{row["name"]}"' in text]
    assert not named, named
    for row in PHASES:
        assert callable(phase_function(row["run"])), row
        for engine, function in row.get("engine", {}).items():
            assert callable(phase_function(function, engine)), (row, engine)


def test_a_probe_kind_is_registered_in_one_place() -> None:
    """Adding a probe kind is its builder in the gates and its row in names.PROBE_KINDS (which
    config validates against): every row has its builder, and config keeps no list of kinds."""
    from surefoot.base.names import PROBE_KINDS
    from surefoot.deploy import gates

    for kind in PROBE_KINDS:
        assert callable(getattr(gates, f"_check_{kind}", None)), kind
    text = (SOURCE / "config" / "probes.py").read_text(encoding="utf-8")
    assert 'Literal["http"' not in text and "PROBE_KINDS" in text


def test_the_fakes_are_an_engine_and_a_host() -> None:
    """FakeEngine, FakeHost, FakeTarget and FakeSwarm, which the phases, the fleet and the swarm's
    phases are tested on, implement the protocols the real ones do: mypy (strict) checks the
    assignments at the end of tests/fakes.py and tests/fake_swarm.py."""
    import os
    import subprocess
    import sys

    checked = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "tests/fakes.py",
                              "tests/fake_host.py", "tests/fake_swarm.py"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "MYPYPATH": "src:tests"})
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_architecture_page_names_only_what_exists() -> None:
    """docs/architecture.md names modules and packages as paths (``deploy/run/runner.py``,
    ``engines/swarm/``): each one exists."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:[a-z_]+/)+(?:[a-z_]+\.py)?)`", text))
    missing = sorted(name for name in named if not (SOURCE / name).exists() and not (ROOT / name).exists())
    assert named and not missing, missing
