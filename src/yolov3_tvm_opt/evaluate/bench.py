"""Latency in interleaved rounds: every TVM variant and every peer, one turn each per round.

Timing one system after another lets any drift during the run (a neighbour's compile on this
2-core machine, frequency, a pool still spinning from the previous system) land on one system
only; a 20 % "regression" could be nothing but bad luck. In rounds, each system runs once per
round in a seeded shuffled order (``deploy.rounds``, the code a deploy bundle times with too), so
drift hits all of them alike and the ratio within a round cancels it (``deploy.stats.compare``
turns those ratios into a median and a 95 % interval). Everyone gets
the same input array and thread count, and ONNX Runtime's outputs on that input are the reference
for the max |diff| that proves the speed is of a correct model. Profiling runs after all timing.

With a ``RemoteDevice`` the TVM artifacts run on a server of TVM's RPC tracker and time
themselves on its clock (no network time), still one turn per round beside the local peers.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import UserError
from ..core.host import host_cores
from ..deploy.profiler import OpTime, profile_ops
from ..deploy.rounds import LatencyStats, time_rounds
from ..deploy.stats import Ratio, compare
from ..runtime import create_vm, load_artifact
from ..runtime.device import set_cpu_threads
from ..runtime.rpc import load_remote, remote_timer, request_session
from .peers import REFERENCE, PeerInput, System, prepare_peers


@dataclass(frozen=True)
class RemoteDevice:
    """A device behind TVM's RPC tracker: where ``bench --runner rpc`` runs the artifacts."""

    host: str
    port: int
    key: str
    timeout_s: int = 60


@dataclass
class BenchRun:
    """One bench: every system's latency from the same rounds, the diffs, the TVM profiles."""

    device: str
    threads: int
    seed: int
    tvm: list[str]  # the TVM systems' names, in the order given; the rest are peers
    stats: dict[str, LatencyStats]
    max_abs_diff: dict[str, float]  # each system's outputs vs ONNX Runtime's on the same input
    skipped: dict[str, str] = field(default_factory=dict)  # peers that cannot run here, and why
    profile_notes: dict[str, str] = field(default_factory=dict)  # why an artifact asked for has no profile
    outputs: dict[str, list[np.ndarray]] = field(default_factory=dict, repr=False)
    profile: dict[str, list[OpTime]] = field(default_factory=dict)

    @property
    def peers(self) -> list[str]:
        return [name for name in self.stats if name not in self.tvm]

    @property
    def rounds(self) -> int:
        return next(iter(self.stats.values())).iters

    def ratio(self, numerator: str, denominator: str) -> Ratio:
        """``numerator``'s time over ``denominator``'s, round by round (> 1: the denominator is faster)."""
        return compare(self.stats[numerator].samples_ms, self.stats[denominator].samples_ms, self.seed)

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device, "threads": self.threads, "seed": self.seed, "tvm": self.tvm,
            "stats": {name: asdict(s) for name, s in self.stats.items()}, "max_abs_diff": self.max_abs_diff,
            "skipped": self.skipped, "profile_notes": self.profile_notes,
            "profile": {name: [asdict(row) for row in rows] for name, rows in self.profile.items()},
        }


def max_abs_diff(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """The largest |a - b| over all outputs, in float64 (bf16 peers included)."""
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) for a, b in zip(outputs, reference))


def bench_artifacts(
    artifact_dirs: dict[str, Path],
    data: np.ndarray,
    onnx_path: Path | None = None,
    peers: Sequence[str] = (REFERENCE,),
    onnx_noscatter: Path | None = None,
    peers_int8: Path | None = None,
    device: str | None = None,
    iters: int = 50,
    warmup: int = 5,
    max_seconds: float = 0.0,
    threads: int = 0,
    seed: int = 0,
    profile_topk: int = 0,
    profile_runs: int = 3,
    rpc: RemoteDevice | None = None,
) -> BenchRun:
    """Time the TVM artifacts and the ``peers`` (ONNX Runtime always) in ``iters`` interleaved rounds.

    ``onnx_path`` defaults to the ONNX the first artifact was compiled from; every artifact must
    take the same input; ``peers_int8`` is the directory of the peers' own int8 models
    (``evaluate.peer_int8``). Peers that cannot run here are listed in ``skipped``, not fatal. A build
    that replays CUDA graphs has no per-op profile (the VM sees one call): ``profile_notes`` says so.
    """
    artifacts = {name: load_artifact(Path(directory)) for name, directory in artifact_dirs.items()}
    first = next(iter(artifacts.values()))
    for name, artifact in artifacts.items():
        if tuple(data.shape) != tuple(artifact.meta["input_shape"]):
            raise UserError(f"input shape {tuple(data.shape)} does not match {name}'s {tuple(artifact.meta['input_shape'])}; recompile with that size")
    threads = threads or first.threads or host_cores()
    if rpc is not None:
        systems = _remote_systems(artifacts, data, rpc, profile_topk)
    else:
        if (device or first.device) == "cpu":
            set_cpu_threads(threads)
        loaded = {name: create_vm(artifact, device) for name, artifact in artifacts.items()}
        systems = {name: System(name, model.runner(data), model.run(data)) for name, model in loaded.items()}
    spec = PeerInput(Path(onnx_path or first.meta["onnx_path"]), first.meta["input_name"], data, threads, onnx_noscatter, peers_int8)
    ready, skipped = prepare_peers([REFERENCE, *(p for p in peers if p != REFERENCE)], spec)
    systems.update(ready)
    reference = systems[REFERENCE].outputs
    stats = time_rounds({name: s.run_once for name, s in systems.items()}, iters, warmup, max_seconds, seed)
    profile, notes = {}, {}
    for name, artifact in (artifacts.items() if profile_topk > 0 else []):
        if artifact.meta.get("cuda_graph"):
            notes[name] = (
                f"no per-op profile for {name}: it replays its kernels as CUDA graphs, where the VM sees one call; "
                "compile with --no_cuda_graph (target.cuda_graph: false) to profile"
            )
        else:
            profile[name] = profile_ops(artifact, data, device, profile_runs, profile_topk)
    return BenchRun(
        device=f"rpc:{rpc.key}/{first.device}" if rpc is not None else first.device,
        threads=threads,
        seed=seed,
        tvm=list(artifacts),
        stats=stats,
        max_abs_diff={name: max_abs_diff(s.outputs, reference) for name, s in systems.items() if name != REFERENCE},
        skipped=skipped,
        profile_notes=notes,
        outputs={name: s.outputs for name, s in systems.items()},
        profile=profile,
    )


def _remote_systems(artifacts: dict[str, Any], data: np.ndarray, rpc: RemoteDevice, profile_topk: int) -> dict[str, System]:
    """The artifacts loaded on one server of the tracker, each timing itself there."""
    if profile_topk > 0:
        raise UserError("the per-op profile cannot run inside an RPC server; drop --profile, or bench on the device itself")
    session = request_session(rpc.host, rpc.port, rpc.key, rpc.timeout_s)
    systems = {}
    for name, artifact in artifacts.items():
        model = load_remote(session, artifact)
        systems[name] = System(name, remote_timer(model, data), model.run(data))
    return systems


@contextmanager
def artifact_copy(artifact_dir: Path) -> Iterator[Path]:
    """A throwaway copy of an artifact directory: a second model.so that TVM loads as its own module.

    The A/A check times an artifact against this copy; any "speedup" it reports is the method's noise.
    Two loads of one model.so can still differ by up to about 1 % inside one process (where their
    code and buffers land in memory), so with many quiet rounds an interval that narrow may miss 1.00.
    """
    with tempfile.TemporaryDirectory(prefix="yolov3-tvm-aa-") as tmp:
        copy = Path(tmp) / "copy"
        shutil.copytree(artifact_dir, copy)
        yield copy


