"""The per-op profile of a real artifact: scatter_nd shows in the baseline and not in the fast variant."""

from __future__ import annotations

from yolov3_tvm_opt.deploy.profiler import format_profile, profile_ops
from yolov3_tvm_opt.evaluate.images import random_input
from yolov3_tvm_opt.runtime import load_artifact


def test_profile_finds_scatter_only_in_the_baseline(tiny_artifacts):
    data = random_input((1, 3, 96, 96), "float32", seed=3, input_scale=1 / 255)
    tables = {}
    for variant in ("baseline", "fastscatter"):
        tables[variant] = profile_ops(load_artifact(tiny_artifacts[variant]), data, "cpu", runs=2, topk=None)
    base_names = [row.name for row in tables["baseline"]]
    assert any("scatter_nd" in name for name in base_names)
    assert not any("scatter" in row.name for row in tables["fastscatter"])
    assert abs(sum(row.share for row in tables["baseline"]) - 1.0) < 1e-6
    assert all(row.calls >= 1 for row in tables["baseline"])
    table = format_profile(tables["baseline"][:5])
    assert table.startswith("=== Per-op Profile (Top 5 ) ===") and table.count("\n") == 5 + 2
