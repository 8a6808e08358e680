"""pyproject.toml says what runs: every import is declared, nothing is declared for nothing, the lock covers it.

`make` installs requirements.lock and the package with --no-deps, so nothing at install time would
notice a declared dependency we stopped using, or an import nobody declared (openvino was both
imported and undeclared); `pip install .` outside make would then give a broken tool.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[1]
# declared, used, but never imported by name
USED_WITHOUT_IMPORT = {
    "dvc": "runs the pipeline's stages (`dvc repro`, make bench)",
    "xgboost-cpu": "MetaSchedule's default cost model imports xgboost while tuning",
    "scikit-image": "evaluate/photos.py copies its sample photos, found without importing it",
}


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imports(root: Path) -> set[str]:
    """The distributions that the absolute imports of every .py under ``root`` come from."""
    modules = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules.add(node.module.split(".")[0])
    owners = importlib.metadata.packages_distributions()
    ours = {"yolov3_tvm_opt", "_stage", "conftest"}
    return {
        _name(dist) for module in modules - set(sys.stdlib_module_names) - ours for dist in owners.get(module, [module])
    }


def test_pyproject_declares_exactly_what_the_code_imports_and_the_lock_pins_it():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    extras = {extra: {_name(r) for r in reqs} for extra, reqs in project["optional-dependencies"].items()}
    used = _imports(REPO / "src") | _imports(REPO / "stages")
    assert used - runtime - extras["peers"] == set(), "imported but not declared"
    assert runtime - used == set(USED_WITHOUT_IMPORT), "declared but never imported (or an entry above is stale)"
    assert _imports(REPO / "tests") - runtime - extras["peers"] - extras["test"] == set(), "tests import undeclared packages"
    assert extras["peers"] <= used, "a peer nobody imports"
    locked = {_name(line) for line in (REPO / "requirements.lock").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert runtime | extras["peers"] | extras["test"] <= locked, "declared but not pinned in requirements.lock"
