"""Import Apache TVM, from the pinned wheel or from a user's source build, only when asked.

Users with a source build of TVM (the seed project's setup) point ``TVM_HOME`` at the checkout
and ``TVM_LIBRARY_PATH`` at its build directory; TVM itself honours ``TVM_LIBRARY_PATH`` when it
locates ``libtvm.so``, so all this module adds is the ``TVM_HOME/python`` fallback and one clear
error when neither works. Importing this module imports nothing: the model stage and tools that
only read files stay free of TVM, and every layer that needs TVM calls ``load_tvm``.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from .errors import UserError


def load_tvm() -> ModuleType:
    """Return the ``tvm`` module, falling back to ``$TVM_HOME/python`` when it is not installed."""
    try:
        return importlib.import_module("tvm")
    except ImportError as first_error:
        home = os.environ.get("TVM_HOME")
        if not home:
            raise UserError(
                f"cannot import tvm ({first_error}); run `make setup` to install the pinned "
                "apache-tvm, or set TVM_HOME to a TVM source checkout (and TVM_LIBRARY_PATH to its build dir)"
            ) from first_error
        sys.path.insert(0, os.path.join(home, "python"))
        try:
            return importlib.import_module("tvm")
        except ImportError as second_error:
            raise UserError(
                f"cannot import tvm from TVM_HOME={home} ({second_error}); check that "
                "$TVM_HOME/python exists and TVM_LIBRARY_PATH points at the matching build directory"
            ) from second_error
