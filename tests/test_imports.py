"""The import graph of the product: one direction between packages, no circle inside one.

Read with ast (nothing is imported), function-local imports included, so a test cannot pass
because an import happens to run late.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("webui", "harmony_cli", "lightning_modules")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_modules() -> dict[str, Path]:
    """Every module of the three packages (``harmony_cli.store`` for its ``__init__.py``)."""
    return {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def imported_names(name: str, path: Path) -> set[str]:
    """The absolute names each import statement of the module reaches (``from a import b``: a.b and a)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the product modules it imports (a name that is no module counts as its package's)."""
    modules = product_modules()
    return {name: {n for n in imported_names(name, path) if n in modules and n != name}
            for name, path in modules.items()}


def absolute_names(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The absolute module names one import statement of ``module`` names (``from a import b``: a and a.b)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
    source = ".".join(base + ([node.module] if node.module else []))
    return {source} | {f"{source}.{alias.name}" for alias in node.names}


def module_level_imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    """The imports that run when the module is imported: module level, in ``try`` or ``if`` blocks, but
    not under ``if TYPE_CHECKING``, in functions or in classes."""
    found, todo = [], list(ast.parse(path.read_text(), str(path)).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            todo += node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody + [n for h in node.handlers for n in h.body]
    return found


# What ``--help`` and the torch-free commands never load (see the test below that runs them).
HEAVY = ("torch", "torchvision", "lightning", "pandas", "matplotlib")


def heavy_loader():
    """name -> whether importing it loads a HEAVY library: a product module through its own module-level
    imports and the ``__init__`` of every package above it."""
    modules = product_modules()

    def imports_of(name: str) -> set[str]:
        parents = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}
        if name not in modules:  # another library, or a name inside a module (its module is counted)
            return set()
        return parents | {n for node in module_level_imports(modules[name])
                          for n in absolute_names(name, modules[name], node)}

    @cache
    def loads_heavy(name: str) -> bool:
        reached, todo = {name}, [name]
        while todo:
            for target in imports_of(todo.pop()) - reached:
                reached.add(target)
                todo.append(target)
        return any(n.split(".")[0] in HEAVY for n in reached)

    return loads_heavy


def optional_extras() -> set[str]:
    """The import names of the optional extras' packages (dev's test tools left out)."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {re.split(r"[<>=\[ ]", requirement)[0].replace("-", "_")
            for extra, requirements in extras.items() if extra != "dev" for requirement in requirements}


def test_function_local_imports_only_keep_heavy_libraries_out_or_load_an_optional_extra():
    """Outside the commands (which import in their functions so that ``--help`` starts at once), an import
    inside a function is there for one of two reasons, and says which in a comment: it keeps torch (or
    pandas, matplotlib) out of a module that does not load it otherwise, or it loads an optional extra
    that may not be installed."""
    loads_heavy, extras, unexplained = heavy_loader(), optional_extras(), []
    for name, path in product_modules().items():
        if name.startswith("harmony_cli.commands"):
            continue
        lines = path.read_text().splitlines()
        local = [node for fn in ast.walk(ast.parse(path.read_text(), str(path)))
                 if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))]
        for node in local:
            targets = absolute_names(name, path, node)
            keeps_heavy_out = any(map(loads_heavy, targets)) and not loads_heavy(name)
            optional = any(t.split(".")[0] in extras for t in targets)
            said = "#" in lines[node.lineno - 1] or lines[node.lineno - 2].lstrip().startswith("#")
            if not ((keeps_heavy_out or optional) and said):
                unexplained.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}")
    assert not unexplained


def test_the_heavy_rule_reads_packages_and_extras():
    loads_heavy = heavy_loader()
    assert loads_heavy("lightning_modules.metrics.rma") and loads_heavy("harmony_cli.study.cells")
    assert loads_heavy("harmony_cli.analysis.report")  # through analysis.plot: matplotlib
    assert not loads_heavy("harmony_cli.store") and not loads_heavy("harmony_cli.hydra_app")
    assert {"timm", "pyarrow"} <= optional_extras() and "pytest" not in optional_extras()


def test_the_graph_reads_relative_and_local_imports():
    graph = import_graph()
    # a relative import at the top, one inside a function, and a name imported from a package
    assert "harmony_cli.errors" in graph["harmony_cli.hydra_app"]
    assert "lightning_modules.finetune" in graph["harmony_cli.study.runs"]
    assert "harmony_cli.store" in graph["webui.dashboard"]


def test_webui_imports_nothing_from_the_commands():
    """Logic the page needs lives beside what it belongs to, never in harmony_cli/commands/ (which parses)."""
    graph = import_graph()
    reached = {f"{m} -> {n}" for m, targets in graph.items() if m.startswith("webui")
               for n in targets if n.startswith("harmony_cli.commands")}
    assert not reached


def test_imports_run_webui_then_harmony_cli_then_lightning_modules():
    graph = import_graph()
    backwards = {f"{m} -> {n}" for m, targets in graph.items() for n in targets
                 if PACKAGES.index(n.split(".")[0]) < PACKAGES.index(m.split(".")[0])}
    assert not backwards


def test_no_import_circle():
    """A circle between modules (harmony_cli.errors <-> harmony_cli.hydra_app, say) is found, whatever its length.

    A package's ``__init__`` re-exporting its own modules is no circle: edges from a module to
    the package that holds it are left out.
    """
    graph = {m: {n for n in targets if not m.startswith(n + ".")} for m, targets in import_graph().items()}
    state, circles = {}, []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles


def test_one_user_error_class_without_torch():
    """``except UserError`` in the CLI catches what the torch package raises (one class, real bases),
    and importing it loads no torch."""
    code = ("import sys\n"
            "from harmony_cli.errors import UserError\n"
            "import lightning_modules.errors as torch_side\n"
            "assert 'torch' not in sys.modules, 'importing the error class loaded torch'\n"
            "class RunFailed(torch_side.UserError):\n"
            "    pass\n"
            "try:\n"
            "    raise RunFailed('no checkpoint')\n"
            "except UserError as caught:\n"
            "    print('caught', type(caught).__mro__[1].__module__)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "caught lightning_modules.errors"


def test_help_and_the_torch_free_commands_load_no_torch(tmp_path):
    """The commands' function-local imports keep torch and Lightning out of what needs neither."""
    from harmony_cli.store import Store
    from tests.helpers import add_labelled_pilot

    url = f"sqlite:///{tmp_path / 'h.db'}"
    with Store.open(url) as store:
        add_labelled_pilot(store)
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from harmony_cli.main import app\n"
        "result = CliRunner().invoke(app, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, f'--help loaded {heavy}'\n"
        f"for args in (['studies', '--db', {url!r}], ['annotators', 'list', '--db', {url!r}],\n"
        f"             ['analyze', '--db', {url!r}, '--out', {str(tmp_path / 'report')!r}],\n"
        "             ['power', '--examples', '10', '--annotators', '3', '--simulations', '20',\n"
        f"              '--out', {str(tmp_path / 'power')!r}]):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, (args[0], result.output)\n"
        "    assert 'torch' not in sys.modules and 'lightning' not in sys.modules, f'{args[0]} loaded torch'\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "HARMONY_OUTPUTS": str(tmp_path / "outputs")})
    assert done.returncode == 0, done.stderr[-2000:]
