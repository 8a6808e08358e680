"""Our package's import graph, read from the source: which of our files a file's imports reach.

Two lists must never drift from the code, so both are computed here instead of kept by hand:
what a deploy bundle ships (every file ``python -m yolov3_tvm_opt.deploy`` can import, and
nothing else) and what each DVC stage depends on (tests/test_pipeline.py checks dvc.yaml against
it). Every ``from ... import`` counts, the ones inside functions too, since a lazy import runs as
soon as its function does; importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # src/yolov3_tvm_opt
NAME = PACKAGE.name


def _module_file(parts: list[str]) -> Path | None:
    """The file of module ``parts`` (``["yolov3_tvm_opt", "core", "files"]``), or None when it is no module of ours."""
    base = PACKAGE.parent.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _packages_of(path: Path) -> set[Path]:
    """The ``__init__.py`` files that importing ``path`` runs first (its package and the ones above)."""
    parts = path.relative_to(PACKAGE.parent).parts[:-1]
    return {f for depth in range(1, len(parts) + 1) if (f := _module_file(list(parts[:depth]))) is not None}


def direct_imports(path: Path) -> set[Path]:
    """The files of our package that ``path`` imports itself (a stage script outside the package too)."""
    inside = path.is_relative_to(PACKAGE)
    package = list(path.relative_to(PACKAGE.parent).parts[:-1]) if inside else []
    found: set[Path | None] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            target = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
        elif (node.module or "").split(".")[0] == NAME:
            target = node.module.split(".")
        else:
            continue
        found.update(_module_file(target[:depth]) for depth in range(1, len(target) + 1))
        found.update(_module_file(target + [alias.name]) for alias in node.names)  # `from pkg import module`
    return {f for f in found if f is not None}


def reached(starts: Iterable[Path]) -> set[Path]:
    """Every file of our package that importing (or running) ``starts`` can execute, ``starts`` included."""
    pending = [Path(p) for p in starts]
    pending += [init for p in pending if p.is_relative_to(PACKAGE) for init in _packages_of(p)]
    seen: set[Path] = set()
    while pending:
        path = pending.pop()
        if path not in seen:
            seen.add(path)
            pending.extend(direct_imports(path))
    return seen
