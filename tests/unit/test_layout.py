"""The layout keeps its promises: subpackages whose names say what they hold, with empty __init__ files (start-up
pays nothing for them), no import cycles between rootsand's modules (lazy imports included), and the import rules
between the stages below."""

import ast
import os

import rootsand

PACKAGE = os.path.dirname(rootsand.__file__)
SUBPACKAGES = {"cli", "config", "runtime", "net", "security", "guard", "ops", "linux", "export"}
TOP_MODULES = {"__init__", "__main__", "errors"}

# What config/ imports today beyond config/, errors and the built-in profiles' data (rootsand.profiles), each
# edge with what it is for. Later steps shrink this list (issue 19: config/ imports only config/ and the pure
# parts of security/); the test fails on any edge not listed here and on any listed edge no longer used.
CONFIG_EXCEPTIONS = {
    ("config.homerule", "guard.hostpaths"): "is_below: path arithmetic",
    ("config.plan", "guard.hostpaths"): "is_below: path arithmetic",
    ("config.plan", "security.seccomp.rules"): "Rule, HostArch, rules_for: the rules as data (pure)",
    ("config.plan", "security.limits"): "Limits, plan_limits, describe_limits (pure)",
    ("config.plan", "security.landlockrules"): "Ruleset, ruleset, describe: the Landlock rules as data (pure)",
    ("config.spec", "security.landlockrules"): "MODES, REVOKE_VARIABLE: --landlock, the tests' switch",
    ("config.profile", "security.seccomp.rules"): "SOCKET_FAMILIES (pure)",
    ("config.profile", "net.allowlist"): "parse_entry: checks allow_hosts entries",
    ("config.spec", "net.allowlist"): "checks --allow-host entries",
    ("config.hostfiles", "security.seccomp.rulefile"): "load_rule_file: a custom rule file (pure)",
    ("config.hostfiles", "guard.hostpaths"): "real_path: realpath that survives a link swapped meanwhile",
    ("config.hostfiles", "ops.registry"): "runtime_dirs_in_use: rootsand's own directories (own_dirs)",
    ("config.host", "linux.procfs"): "read_sysctl: the host's facts",
    ("config.host", "security.cgroup"): "delegated_cgroup: the host's facts",
    ("config.host", "security.caps"): "last_cap: the host's facts",
    ("config.host", "security.seccomp.rules"): "HostArch: the host's facts (pure)",
}
# The parts of security/ that are plain data and planning: config/ may use them. They touch nothing of the
# system: no libc, no libseccomp, no /proc.
PURE_SECURITY = {"security.limits", "security.seccomp.rules", "security.seccomp.rulefile",
                 "security.seccomp.syscall_names", "security.landlockrules"}
FACTS = "config.host"  # the one module of config/ that reads the host: it may use the rest of security/


def _modules() -> dict[str, str]:
    """Every module of the package, by dotted name without the leading "rootsand." ("config.plan"), to its path."""
    found = {}
    for directory, dirs, files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "profiles"))
        relative = os.path.relpath(directory, PACKAGE)
        prefix = "" if relative == "." else relative.replace(os.sep, ".") + "."
        for name in files:
            if name.endswith(".py"):
                found[prefix + name[:-3]] = os.path.join(directory, name)
    return found


def _imports() -> dict[str, set[str]]:
    """Each module's imports of rootsand's own modules (a package's __init__ counts as the package's name:
    "rootsand" for the top one, as `from rootsand import STARTED`)."""
    modules = _modules()

    def resolve(dotted: str) -> str:  # "rootsand.config.plan" -> "config.plan"; "rootsand" -> "rootsand"
        return dotted.removeprefix("rootsand.") if dotted != "rootsand" else "rootsand"

    graph = {}
    for module, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "rootsand":
                for alias in node.names:  # `from rootsand.config import plan`: the module config.plan
                    candidate = resolve(f"{node.module}.{alias.name}")
                    deps.add(candidate if candidate in modules else resolve(node.module))
            elif isinstance(node, ast.Import):
                deps |= {resolve(alias.name) for alias in node.names if alias.name.split(".")[0] == "rootsand"}
        graph[module] = deps - {module}
    return graph


def _stage(module: str) -> str:
    return module.split(".")[0]


def test_the_package_is_cut_into_subpackages():
    top = {name[:-3] for name in os.listdir(PACKAGE) if name.endswith(".py")}
    assert top == TOP_MODULES
    subpackages = {name for name in os.listdir(PACKAGE) if os.path.isfile(os.path.join(PACKAGE, name, "__init__.py"))}
    assert subpackages - {"profiles"} == SUBPACKAGES


def test_the_subpackages_init_files_are_empty():
    """An __init__ is imported with every module of its package: it must cost nothing."""
    for name in SUBPACKAGES:
        assert os.path.getsize(os.path.join(PACKAGE, name, "__init__.py")) == 0, name


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
    assert _imports()["config.model"] <= {"errors"}


def test_config_imports_only_config_and_the_listed_exceptions():
    edges = {(module, dep) for module, deps in _imports().items() if _stage(module) == "config"
             for dep in deps if _stage(dep) not in ("config", "errors", "profiles")}
    assert sorted(edges - set(CONFIG_EXCEPTIONS)) == []  # a new edge: planning must not reach it
    assert sorted(set(CONFIG_EXCEPTIONS) - edges) == []  # an edge gone: take it off the list


def test_runtime_never_imports_the_command_line():
    assert sorted((module, dep) for module, deps in _imports().items() if _stage(module) == "runtime"
                  for dep in deps if _stage(dep) == "cli") == []


def test_only_the_entry_point_imports_the_command_line():
    assert sorted(module for module, deps in _imports().items() if _stage(module) != "cli"
                  and any(_stage(dep) == "cli" for dep in deps)) == ["__main__"]


def test_the_runtime_reads_the_plan_never_the_profile_or_the_spec():
    """runtime/ carries out a Plan (config.plan, its records in config.model and config.idmap, the host facts
    and helpers of config.host): what the profile and the spec said reaches it only through the Plan."""
    allowed = {"config.plan", "config.model", "config.idmap", "config.host"}
    assert sorted((module, dep) for module, deps in _imports().items() if _stage(module) == "runtime"
                  for dep in deps if _stage(dep) == "config" and dep not in allowed) == []


def test_config_uses_only_the_pure_parts_of_security():
    assert sorted((module, dep) for module, deps in _imports().items() if _stage(module) == "config" and module != FACTS
                  for dep in deps if _stage(dep) == "security" and dep not in PURE_SECURITY) == []


def test_the_pure_security_modules_import_nothing_that_touches_the_system():
    """Their rootsand imports (lazy ones too, and what those import) stay among themselves, the records of
    config.model, config.tomlfile and errors; and neither ctypes nor an interface to the kernel is imported."""
    graph = _imports()
    # rootsand: STARTED; config.netmodes: the network modes as data (whether a mode leaves sockets open)
    allowed = PURE_SECURITY | {"config.model", "config.netmodes", "config.tomlfile", "errors", "rootsand"}
    reached, todo = set(), list(PURE_SECURITY)
    while todo:
        for dep in graph.get(todo.pop(), set()) - reached:
            reached.add(dep)
            todo.append(dep)
    assert sorted(reached - allowed) == []
    modules = _modules()
    for module in sorted((PURE_SECURITY | reached) & set(modules)):
        with open(modules[module]) as f:
            tree = ast.parse(f.read())
        names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
        names |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert sorted(names & {"ctypes", "termios", "resource", "fcntl", "pyseccomp"}) == [], module


def test_the_exporters_read_only_the_plan():
    """export/ turns a Plan into other engines' formats: it reads the plan's records and the pure parts of
    security/, never the host (no runtime, no guard, no ctypes); the CLI makes the plan and writes the files."""
    allowed = {"config.model", "config.netmodes", "config.plan", "config.idmap", "errors"} | PURE_SECURITY
    graph = _imports()
    exporters = sorted(module for module in graph if _stage(module) == "export")
    assert exporters
    assert sorted((module, dep) for module in exporters for dep in graph[module]
                  if _stage(dep) != "export" and dep not in allowed) == []
    modules = _modules()
    for module in exporters:
        with open(modules[module]) as f:
            names = {alias.name.split(".")[0] for node in ast.walk(ast.parse(f.read())) if isinstance(node, ast.Import)
                     for alias in node.names}
        assert sorted(names & {"ctypes", "subprocess", "termios", "resource", "fcntl"}) == [], module


def test_planning_and_rule_files_load_no_system_interface(tmp_path):
    """What the pure modules do, in a fresh interpreter: no ctypes (so no libc, no libseccomp) gets loaded."""
    import subprocess
    import sys

    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nsyscall = "ptrace"\n')
    code = ("import sys\n"
            "from rootsand.security import limits\n"
            "from rootsand.security.seccomp import rulefile, rules\n"
            "rules.rules_for(sys.argv[1], False, file_rules=rulefile.load_rule_file(sys.argv[1]))\n"
            "limits.plan_limits(1 << 30, 100, 1.5, {}, {'memory'})\n"
            "print(sorted(m for m in ('ctypes', 'termios', 'rootsand.linux.libc') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code, str(rules)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_subpackage_is_installed():
    """pyproject.toml lists the packages: one missing is absent from an installed rootsand (not from a checkout).
    Checked on the repository's files, wherever the tests import rootsand from."""
    import tomllib

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(repo, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    source = os.path.join(repo, "rootsand")
    found = {"rootsand." + os.path.relpath(d, source).replace(os.sep, ".") if d != source else "rootsand"
             for d, _, files in os.walk(source) if "__init__.py" in files}
    assert sorted(found - listed) == []
