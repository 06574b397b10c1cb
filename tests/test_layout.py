"""The package's rooms and the one-way arrows between them (docs/architecture.md)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import rnp_pyro

PACKAGE = Path(rnp_pyro.__file__).parent


def module_name(path: Path) -> str:
    parts = ["rnp_pyro", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The package modules a file imports anywhere in it (inside functions too)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("rnp_pyro")}
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            if not target or not target.startswith("rnp_pyro"):
                continue
            for alias in node.names:  # ``from . import x`` may name a module
                child = f"{target}.{alias.name}"
                found.add(child if child in MODULES else target)
    return found - {here}


MODULES = {module_name(path) for path in PACKAGE.rglob("*.py")}
GRAPH = {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")}


def reaches(start: str) -> set[str]:
    """Every package module importing ``start`` runs, packages entered on the way included."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        for target in GRAPH.get(name, ()):
            parent = target.rpartition(".")[0]
            inside = name == parent or name.startswith(parent + ".")
            entered = [target] + ([parent] if parent in MODULES and parent != "rnp_pyro"
                                  and not inside else [])
            for each in entered:
                if each not in seen:
                    seen.add(each)
                    todo.append(each)
    return seen


@pytest.mark.parametrize("low", ["model", "variants", "hyper", "program", "spatial", "tree",
                                 "encoder", "likelihood"])
def test_the_model_rooms_import_no_run_config_data_or_run_folder(low):
    reached = reaches(f"rnp_pyro.{low}")
    assert not reached & {"rnp_pyro.config", "rnp_pyro.data", "rnp_pyro.run",
                          "rnp_pyro.folder"}, reached


@pytest.mark.parametrize("analysis", ["metrics", "ppc", "viz"])
def test_analysis_works_on_tensors_not_on_run_folders(analysis):
    assert not reaches(f"rnp_pyro.{analysis}") & {"rnp_pyro.run", "rnp_pyro.folder"}


def test_the_run_folders_files_know_nothing_of_the_model():
    assert reaches("rnp_pyro.folder") <= {"rnp_pyro.errors"}


def test_only_the_command_line_and_the_shipped_models_assemble_runs():
    users = {name for name, targets in GRAPH.items() if "rnp_pyro.run" in targets}
    assert users == {"rnp_pyro.cli", "rnp_pyro.hub"}


def test_training_and_its_report_write_through_the_files_room():
    for room in ("train", "report"):
        assert "rnp_pyro.folder" in GRAPH[f"rnp_pyro.{room}"]
        assert "rnp_pyro.run" not in reaches(f"rnp_pyro.{room}")


def test_training_leaves_figures_to_the_runs_room():
    assert "rnp_pyro.viz" not in reaches("rnp_pyro.train")
    assert "rnp_pyro.viz" in GRAPH["rnp_pyro.run"]


def test_there_is_no_import_cycle():
    for name in GRAPH:
        assert name not in reaches(name), f"{name} imports itself through {sorted(reaches(name))}"


def test_the_command_line_help_imports_neither_torch_nor_pyro():
    code = ("import sys; from click.testing import CliRunner; from rnp_pyro.cli import main; "
            "result = CliRunner().invoke(main, ['--help']); assert result.exit_code == 0; "
            "print(sorted({'torch', 'pyro'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_module_map_in_the_docs_lists_every_module_above_what_it_imports():
    text = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    block = text.split("## Modules, and the arrows between them")[1].split("\n\n")[1]
    order = [line.split()[0] for line in block.splitlines() if line.startswith("    ") and
             not line.startswith("     ")]
    rooms = {name.split(".")[1] for name in MODULES if name != "rnp_pyro"}
    assert sorted(order) == sorted(rooms)
    rank = {room: i for i, room in enumerate(order)}
    for name, targets in GRAPH.items():
        if name == "rnp_pyro":
            continue
        room = name.split(".")[1]
        for target in targets:
            other = target.split(".")[1]
            assert other == room or rank[other] > rank[room], f"{room} imports {other}, listed above it"
