"""The import graph read from our source: lazy imports count, and a bundle ships its entry point's closure."""

from __future__ import annotations

from yolov3_tvm_opt.evaluate.bundle import shipped_modules
from yolov3_tvm_opt.evaluate.imports import PACKAGE, direct_imports, reached


def test_lazy_imports_and_imported_modules_count():
    """cli imports the layers inside its commands; sources imports modules by name (``from . import darknet``)."""
    cli = {str(p.relative_to(PACKAGE)) for p in direct_imports(PACKAGE / "cli.py")}
    assert {"compiler/compile.py", "evaluate/bundle.py", "deploy/profiler.py"} <= cli
    sources = {str(p.relative_to(PACKAGE)) for p in direct_imports(PACKAGE / "models" / "sources.py")}
    assert {"models/__init__.py", "models/darknet.py", "models/darknet_cfg.py", "core/errors.py"} <= sources


def test_reaching_a_module_runs_the_packages_above_it():
    assert reached([PACKAGE / "core" / "errors.py"]) == {PACKAGE / "__init__.py", PACKAGE / "core" / "__init__.py",
                                                        PACKAGE / "core" / "errors.py"}


def test_a_bundle_ships_what_its_entry_point_imports_and_nothing_else():
    """No module that imports onnx, PIL, yaml or the compiler, and none the entry point cannot reach."""
    shipped = {str(p) for p in shipped_modules()}
    assert {"__init__.py", "deploy/__init__.py", "deploy/__main__.py", "deploy/check.py", "deploy/weights.py",
            "runtime/vm.py", "models/darknet_cfg.py"} <= shipped
    assert not shipped & {"core/params.py", "runtime/rpc.py", "runtime/tracker.py", "models/onnx_info.py", "cli.py"}
    assert not {p.split("/")[0] for p in shipped} & {"compiler", "evaluate"}
