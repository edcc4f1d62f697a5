"""The import graph of the product: one direction between packages, no circle inside one.

Read with ast (nothing is imported), function-local imports included, so a test cannot pass
because an import happens to run late.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
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
        "heavy = [m for m in ('torch', 'lightning', 'pandas', 'matplotlib') if m in sys.modules]\n"
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
