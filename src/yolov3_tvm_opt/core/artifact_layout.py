"""The files of an artifact directory, named once for the compiler that writes them and the runtime that reads them.

An artifact is ``model.so`` (the Relax VM executable and its kernels) plus ``meta.json`` (what is
needed to feed it and to refuse it when it cannot run); CUDA builds also keep ``kernels.cu``, the
generated source, for reading.
"""

from __future__ import annotations

MODEL_FILE = "model.so"
META_FILE = "meta.json"
CUDA_SOURCE_FILE = "kernels.cu"
