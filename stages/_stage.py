"""What every stage script starts with: the right interpreter, paths from the command line, one-line errors.

DVC runs ``python stages/<stage>.py`` with whatever ``python`` is first on PATH; run from outside
the project's venv that interpreter lacks our package, and the stage would die in a traceback.
Importing this module first turns that into one line saying what to do.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable

if importlib.util.find_spec("yolov3_tvm_opt") is None:
    print(
        f"error: {sys.executable} cannot import yolov3_tvm_opt; run `make bench`, or activate the venv "
        "(`. .venv/bin/activate`) and run `dvc repro` again",
        file=sys.stderr,
    )
    sys.exit(2)

from yolov3_tvm_opt.core.errors import exit_code_of  # noqa: E402


def run(main: Callable[[argparse.Namespace], None], parser: argparse.ArgumentParser) -> None:
    """Parse the stage's paths and run it; user errors and Ctrl-C end in one line and a non-zero exit."""
    args = parser.parse_args()
    sys.exit(exit_code_of(lambda: main(args)))
