"""Load and run built artifacts with only the TVM runtime.

Never imports the compiler or ``tvm.relax``: with ``TVM_USE_RUNTIME_LIB=1`` this package runs on
a host that has ``libtvm_runtime`` and no ``libtvm_compiler``.
"""

from .artifact import Artifact, load_artifact
from .vm import LoadedModel, create_vm

__all__ = ["Artifact", "LoadedModel", "create_vm", "load_artifact"]
