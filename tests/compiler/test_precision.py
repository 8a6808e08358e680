"""The precision knob: valid pairs, the bf16 CPU check, and the cuda fp16 build's tensor cores."""

from __future__ import annotations

import json
import shutil

import pytest

from yolov3_tvm_opt.compiler.compile import compile_onnx
from yolov3_tvm_opt.compiler.frontend import import_onnx
from yolov3_tvm_opt.compiler.kernels import PLAIN, TENSOR_CORE, kernel_classes
from yolov3_tvm_opt.compiler.precision import (
    VDPBF16PS,
    apply_precision,
    has_bf16_dot_product,
    mixed_precision_fp16,
)
from yolov3_tvm_opt.compiler.target import make_target
from yolov3_tvm_opt.core.errors import UserError
from yolov3_tvm_opt.core.options import CompileOptions, TargetOptions
from yolov3_tvm_opt.models.sources import build_model

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="cuda builds need nvcc on PATH")
# at 192 px yolov3-tiny has convs on both sides of dlight's "all of M, N, K above 64" rule
CUDA_SIZE = 192


@pytest.mark.parametrize("kind, precision", [("llvm", "fp16"), ("cuda", "bf16"), ("cuda", "int8")])
def test_a_precision_the_target_cannot_build_is_one_error_naming_the_valid_pairs(kind, precision):
    with pytest.raises(UserError, match=r"valid pairs are llvm: fp32 \| bf16 \| int8; cuda: fp32 \| fp16"):
        make_target(TargetOptions(kind=kind, precision=precision))


def test_bf16_on_a_cpu_without_avx512_bf16_stops_with_one_line(tiny_onnx):
    target = make_target(TargetOptions(kind="llvm", mcpu="x86-64-v3", precision="bf16"))
    assert not has_bf16_dot_product(target)
    mod, _, _ = import_onnx(tiny_onnx)
    with pytest.raises(UserError, match="bf16 kernels need avx512_bf16"):
        apply_precision(mod, target, "bf16")


@pytest.mark.parametrize("mcpu", ["sapphirerapids", "emeraldrapids", "graniterapids"])
def test_bf16_where_vdpbf16ps_does_not_pay_stops_with_one_line(tiny_onnx, tmp_path, mcpu):
    """Intel's AVX-512 cores have vdpbf16ps but run our bf16 convs slower than fp32: refused, nothing written."""
    options = CompileOptions(TargetOptions(kind="llvm", mcpu=mcpu, precision="bf16"))
    assert has_bf16_dot_product(make_target(options.target))
    with pytest.raises(UserError, match=f"bf16 would not be faster than fp32 on CPU {mcpu}: .*build with target.precision: fp32$"):
        compile_onnx(tiny_onnx, tmp_path / "a", options)
    assert not (tmp_path / "a").exists()


def test_a_bf16_build_records_its_kernel(tiny_bf16_artifact):
    """A cross-compile for Zen 4, where vdpbf16ps pays: it builds on any machine, and meta.json says which kernel."""
    meta = json.loads((tiny_bf16_artifact / "meta.json").read_text())
    assert json.loads(meta["target"])["mcpu"] == "znver4"
    assert meta["precision"] == "bf16" and meta["bf16_kernel"] == VDPBF16PS


def test_mixed_precision_keeps_float32_input_and_output(tiny_onnx):
    mod, _, _ = import_onnx(tiny_onnx)
    main = mixed_precision_fp16(mod)["main"]
    assert [p.ty.dtype for p in main.params] == ["float32"]
    assert main.ret_ty.dtype == "float32"
    assert "float16" in main.script()


def test_kernel_classes_tells_tensor_core_kernels_from_plain_ones():
    source = (
        'extern "C" __global__ void __launch_bounds__(128) fused_conv2d_a_kernel(half* x) {\n'
        "  nvcuda::wmma::mma_sync(acc[0], a[0], b[0], acc[0]);\n}\n"
        'extern "C" __global__ void fused_conv2d_b_kernel(half* x) {\n  acc = acc + a * b;\n}\n'
    )
    assert kernel_classes(source) == {"fused_conv2d_a_kernel": TENSOR_CORE, "fused_conv2d_b_kernel": PLAIN}


@pytest.mark.slow
@needs_nvcc
def test_cuda_fp16_puts_the_large_convs_on_tensor_cores(tmp_path):
    onnx_path = tmp_path / "tiny.onnx"
    build_model("yolov3-tiny", CUDA_SIZE, onnx_path)
    target = TargetOptions(kind="cuda", cuda_arch="sm_90", precision="fp16")
    compile_onnx(onnx_path, tmp_path / "fp16", CompileOptions(target, fast_scatter_nd=True))
    meta = json.loads((tmp_path / "fp16/meta.json").read_text())
    assert meta["precision"] == "fp16" and meta["cuda_graph"] is True and meta["input_dtype"] == "float32"
    convs = meta["conv_kernels"]
    assert convs == {
        name: {"cores": kernel_classes((tmp_path / "fp16/kernels.cu").read_text())[name], "gemm_mnk": convs[name]["gemm_mnk"]}
        for name in convs
    }
    for name, conv in convs.items():  # dlight's rule, seen in the generated code
        large = min(conv["gemm_mnk"]) > 64
        assert conv["cores"] == (TENSOR_CORE if large else PLAIN), name
    first = next(c for c in convs.values() if c["gemm_mnk"][2] == 27)  # 3x3 over RGB
    assert first["cores"] == PLAIN
    assert sum(c["cores"] == TENSOR_CORE for c in convs.values()) >= 3
