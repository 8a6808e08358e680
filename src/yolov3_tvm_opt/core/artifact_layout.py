"""The files of an artifact directory, named once for the compiler that writes them and the runtime that reads them.

An artifact is ``model.so`` (the Relax VM executable and its kernels) plus ``meta.json`` (what is
needed to feed it and to refuse it when it cannot run); CUDA builds also keep ``kernels.cu``, the
generated source, for reading. Built with ``--weights separate``, the conv weights live in
``weights.bin`` (raw little-endian arrays, listed with their sha256 in meta.json) instead of ``model.so``.
"""

from __future__ import annotations

MODEL_FILE = "model.so"
META_FILE = "meta.json"
CUDA_SOURCE_FILE = "kernels.cu"
WEIGHTS_FILE = "weights.bin"
