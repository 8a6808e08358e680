"""The deploy bundle's entry point (``run.sh`` runs ``python -m yolov3_tvm_opt.deploy BUNDLE_DIR [...]``).

Before TVM is imported it makes the bundle's runtime the one that loads: the apache-tvm-ffi wheel
for this Python is unpacked beside the bundle's ``tvm`` package, ``TVM_USE_RUNTIME_LIB=1`` tells
TVM to load ``libtvm_runtime`` only (the compiler is not in the bundle), and for CUDA artifacts
``libcudart.so.13`` and ``libtvm_runtime_cuda.so`` are loaded with RTLD_GLOBAL first, so the CUDA
modules inside ``model.so`` resolve against them. Then it either checks and times the artifacts
(no arguments; synthetic weights are regenerated first, with numpy alone) or serves the device to
a TVM RPC tracker (``rpc_server ...``).
"""

from __future__ import annotations

import ctypes
import json
import os
import runpy
import sys
import zipfile
from pathlib import Path

from ..core.errors import UserError, exit_code_of
from .weights import regenerate_weights

EXIT_OUT_OF_TOLERANCE = 1


def _unpack_ffi(root: Path) -> Path:
    """The apache-tvm-ffi wheel for this Python, unpacked once under ``.runtime/`` (atomically)."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheels = sorted((root / "wheels").glob(f"apache_tvm_ffi-*-{tag}-{tag}-*.whl"))
    if not wheels:
        shipped = sorted(w.name.split("-")[2] for w in (root / "wheels").glob("*.whl"))
        raise UserError(f"this bundle has no TVM FFI for Python {sys.version_info.major}.{sys.version_info.minor} "
                        f"(it ships {', '.join(shipped)}); run it with PYTHON=/path/to/python3.10-3.12 bash run.sh")
    dest = root / ".runtime" / tag
    if not dest.is_dir():
        tmp = dest.with_name(f".{tag}.{os.getpid()}.tmp")
        with zipfile.ZipFile(wheels[-1]) as wheel:
            wheel.extractall(tmp)
        for path in tmp.rglob("*.so*"):
            path.chmod(0o755)
        os.replace(tmp, dest)
    return dest


def _cuda_libraries(root: Path) -> list[Path]:
    return [root / "lib" / "libcudart.so.13", root / "python" / "tvm" / "lib" / "libtvm_runtime_cuda.so"]


def _preload_cuda(root: Path) -> None:
    """libcudart.so.13 and TVM's CUDA runtime, globally, before any CUDA model.so is loaded."""
    for library in _cuda_libraries(root):
        try:
            ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            reason = str(exc).splitlines()[0]
            raise UserError(
                f"these artifacts were built for CUDA, but {library.name} cannot load here ({reason}); "
                "run the bundle on a host with an NVIDIA GPU and its driver (libcuda.so.1)"
            ) from None


def prepare(root: Path) -> dict:
    """Put the bundle's runtime first on sys.path and preload what CUDA artifacts need; return bundle.json."""
    bundle = json.loads((root / "bundle.json").read_text())
    ffi = str(_unpack_ffi(root))
    sys.path.insert(0, ffi)
    # the RPC server runs its sessions in child processes: they must find the same runtime
    os.environ["PYTHONPATH"] = os.pathsep.join([ffi, str(root / "python")])
    os.environ["TVM_USE_RUNTIME_LIB"] = "1"
    if any(entry["device"] == "cuda" for entry in bundle["artifacts"]):
        _preload_cuda(root)
    return bundle


def _main(root: Path, args: list[str], outcome: list[bool]) -> None:
    serving = bool(args) and args[0] == "rpc_server"
    if not serving:  # numpy alone, so a host without the device still gets this far
        regenerate_weights(root)
    bundle = prepare(root)
    import tvm

    compiler = Path(tvm.__file__).parent / "lib" / "libtvm_compiler.so"
    print(f"TVM {tvm.__version__} runtime from {Path(tvm.__file__).parent} "
          f"(compiler library present: {compiler.exists()}), Python {sys.version.split()[0]}", flush=True)
    if serving:
        # the server's sessions run in child processes, which load the CUDA libraries themselves
        cuda = any(entry["device"] == "cuda" for entry in bundle["artifacts"])
        libraries = ["--load-library", ":".join(str(p) for p in _cuda_libraries(root))] if cuda else []
        sys.argv = ["tvm.exec.rpc_server", *args[1:], *libraries]
        runpy.run_module("tvm.exec.rpc_server", run_name="__main__")
        return
    if args:
        raise UserError(f"unknown arguments {' '.join(args)}; run `bash run.sh` or `bash run.sh rpc_server --tracker HOST:PORT --key KEY`")
    from .check import run_check

    outcome.append(run_check(root))


def main(argv: list[str]) -> int:
    root, args = Path(argv[0]).resolve(), argv[1:]
    outcome: list[bool] = []
    code = exit_code_of(lambda: _main(root, args, outcome))
    return code or (0 if all(outcome) else EXIT_OUT_OF_TOLERANCE)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
