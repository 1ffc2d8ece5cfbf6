"""The GPU side of the bench: arrays on the device, CUDA-event timing, cuBLAS contenders.

Imported only for `--device cuda` (or a "cuda" contender), so the CPU bench never loads CuPy.

Contenders for GEMM cases, each at the precision of the zengrad row it faces:
  cupy-matmul  cupy.matmul (cuBLAS), FP32 compute (CuPy's compute type pinned to the default, so
               CUPY_TF32=1 in the environment cannot turn it into TF32);
  cublas-tf32  cupy.matmul with CuPy's compute type set to TF32: cublasGemmEx with
               CUBLAS_COMPUTE_32F_FAST_TF32 (float32 in and out, TF32 products, FP32 sums);
  cublas-bf16  cublasGemmEx on bfloat16 copies of the inputs (rounded to nearest even once,
               outside the timing), FP32 output and FP32 compute (CUBLAS_COMPUTE_32F): cuBLAS
               reads half the bytes zengrad's kernel reads, which converts float32 as it loads.
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import _device

CUPY_MATMUL = "cupy-matmul"
CUBLAS_TF32 = "cublas-tf32"
CUBLAS_BF16 = "cublas-bf16"
BY_PRECISION = {None: CUPY_MATMUL, "tf32": CUBLAS_TF32, "bf16": CUBLAS_BF16}
NAMES = tuple(BY_PRECISION.values())

# cuBLAS / CUDA enum values (cublas_api.h, library_types.h), used where CuPy does not export them.
_CUBLAS_OP_N, _CUBLAS_OP_T = 0, 1
_CUDA_R_32F, _CUDA_R_16BF = 0, 14
_CUBLAS_COMPUTE_32F = 68
_CUBLAS_GEMM_DEFAULT = -1


def cupy():
    """CuPy, once a GPU is known to be usable (RuntimeError saying why not)."""
    return _device.gpu_module("bench --device cuda")


def to_device(a):
    return cupy().asarray(a) if isinstance(a, np.ndarray) else a


def sync() -> None:
    cupy().cuda.get_current_stream().synchronize()


def to_host(a):
    return tuple(None if x is None else _device.to_host(x) for x in a) if isinstance(a, tuple) else _device.to_host(a)


def event_seconds(call, number: int) -> float:
    """Mean seconds per call of `number` back-to-back launches of `call`, between two CUDA events
    on the current stream (GPU time, launch gaps included when the host cannot keep up)."""
    cp = cupy()
    stream = cp.cuda.get_current_stream()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    start.record(stream)
    for _ in range(number):
        call()
    end.record(stream)
    end.synchronize()
    return cp.cuda.get_elapsed_time(start, end) / 1e3 / number


@contextlib.contextmanager
def _compute_type(kind: str):
    """Within the block, cupy.matmul on float32 uses compute type `kind` ("DEFAULT" or "TF32")."""
    try:
        from cupy._core import _routines_linalg as linalg
    except ImportError as exc:
        raise RuntimeError(f"this CuPy offers no way to choose matmul's compute type ({exc})") from None
    before = linalg.get_compute_type(np.float32)
    linalg.set_compute_type(np.float32, getattr(linalg, f"COMPUTE_TYPE_{kind}"))
    try:
        yield
    finally:
        linalg.set_compute_type(np.float32, before)


def _to_bf16(a):
    """float32 device array -> its bfloat16 bit patterns (uint16), rounded to nearest even."""
    cp = cupy()
    bits = cp.ascontiguousarray(a).view(cp.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(cp.uint16)


def gemm_contender(name: str, args: tuple, kwargs: dict):
    """(call, scope) computing op(a) @ op(b) with the cuBLAS contender `name` on device copies of
    the host arrays `args[:2]`."""
    cp = cupy()
    trans_a, trans_b = bool(kwargs.get("trans_a")), bool(kwargs.get("trans_b"))
    a, b = cp.asarray(args[0]), cp.asarray(args[1])
    if name in (CUPY_MATMUL, CUBLAS_TF32):
        if a.dtype != np.float32 and name == CUBLAS_TF32:
            raise TypeError("TF32 applies to float32 inputs only")
        a_op, b_op = (a.T if trans_a else a), (b.T if trans_b else b)
        kind = "TF32" if name == CUBLAS_TF32 else "DEFAULT"
        return (lambda: cp.matmul(a_op, b_op)), (lambda: _compute_type(kind))
    if name != CUBLAS_BF16:
        raise ValueError(f"unknown cuBLAS contender {name!r}")
    if a.dtype != np.float32:
        raise TypeError("the bfloat16 contender takes float32 inputs")
    from cupy_backends.cuda.api import runtime
    from cupy_backends.cuda.libs import cublas

    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    a16, b16 = _to_bf16(a), _to_bf16(b)
    out = cp.empty((m, n), np.float32)
    one, zero = np.ones((), np.float32), np.zeros((), np.float32)
    bf16 = getattr(runtime, "CUDA_R_16BF", _CUDA_R_16BF)
    f32 = getattr(runtime, "CUDA_R_32F", _CUDA_R_32F)
    compute = getattr(cublas, "CUBLAS_COMPUTE_32F", _CUBLAS_COMPUTE_32F)
    # Row-major C (m, n) is column-major C^T (n, m) = op(B)^T op(A)^T: cuBLAS gets B first.
    op_b, ld_b = (_CUBLAS_OP_T, k) if trans_b else (_CUBLAS_OP_N, n)
    op_a, ld_a = (_CUBLAS_OP_T, m) if trans_a else (_CUBLAS_OP_N, k)

    def call():
        handle = cp.cuda.device.get_cublas_handle()
        cublas.gemmEx(handle, op_b, op_a, n, m, k, one.ctypes.data, b16.data.ptr, bf16, ld_b,
                      a16.data.ptr, bf16, ld_a, zero.ctypes.data, out.data.ptr, f32, n, compute,
                      _CUBLAS_GEMM_DEFAULT)
        return out

    return call, contextlib.nullcontext
