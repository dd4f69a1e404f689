"""A batched cuBLAS GEMM issued directly as ``cublasGemmStridedBatchedEx``.

``cupy.matmul`` on 3-D operands does not do what its 2-D path does: it casts f16 operands to
float32, runs the float32 strided-batched GEMM with the data type as compute type (so no TF32
either, whatever ``set_compute_type`` says) and copies the result back to f16 (cupy 14.2,
``cupy/_core/_routines_linalg.pyx``, ``matmul``; cupy/cupy PR #10317: "FP16 batched tensors
were automatically cast back to FP32"). A batched f16 or tf32 record taken through it would time
two casts, an allocation, an FP32 GEMM and a copy under the name of a tensor-core GEMM. So the
cublas backend issues the batched call itself, on the operands as stored (no copy for any
layout), with the compute type a 2-D call gets: ``CUBLAS_COMPUTE_32F`` for f16 and f32,
``CUBLAS_COMPUTE_32F_FAST_TF32`` for tf32, ``CUBLAS_COMPUTE_64F`` for f64.

Storage (:func:`gemmperf.collect.cupy_support.random_operands`): layout "n" stores an operand
column-major, i.e. as the row-major transpose of its logical shape; "t" stores it row-major. A
row-major (r, c) array is a column-major c x r matrix with leading dimension c, so:

=========  ==================  ================  =====  ======
operand    stored (row-major)  column-major is    op     ld
=========  ==================  ================  =====  ======
A "n"      (k, m)              A (m x k)          N      m
A "t"      (m, k)              A^T (k x m)        T      k
B "n"      (n, k)              B (k x n)          N      k
B "t"      (k, n)              B^T (n x k)        T      n
C          (n, m)              C (m x n)          -      m
=========  ==================  ================  =====  ======

and the call is C = op(A) op(B) with the problem's own m, n, k and batch strides m k, k n, m n
(cuBLAS library documentation, ``cublasGemmStridedBatchedEx``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gemmperf.problem import GemmProblem

#: cublasOperation_t (cublas_api.h).
CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
#: cublasComputeType_t (cublas_api.h) per gemmperf dtype.
COMPUTE_TYPES = {"f16": 68, "f32": 68, "tf32": 77, "f64": 70}   # 32F, 32F, 32F_FAST_TF32, 64F
#: cudaDataType_t (library_types.h) of the stored elements per storage dtype.
DATA_TYPES = {"f16": 2, "f32": 0, "f64": 1}                    # CUDA_R_16F, _32F, _64F
#: cublasGemmAlgo_t CUBLAS_GEMM_DEFAULT: the library's heuristic (tensor cores where the compute
#: type allows them).
CUBLAS_GEMM_DEFAULT = -1


def cublas_library() -> tuple[Any, int]:
    """(``cupy_backends.cuda.libs.cublas``, the current device's cuBLAS handle); cupy's wrapper
    binds the handle to the current stream on every call."""
    from cupy.cuda import device
    from cupy_backends.cuda.libs import cublas

    return cublas, device.get_cublas_handle()


def device_pointer(array: Any) -> int:
    """Address of a cupy array's first element."""
    return int(array.data.ptr)


@dataclass
class StridedBatchedGemm:
    """The arguments of one ``cublasGemmStridedBatchedEx`` call for ``problem`` on operands
    stored as ``stored`` = (A, B, C) (module doc); calling it issues the GEMM."""

    problem: GemmProblem
    stored: tuple[Any, Any, Any]

    def __post_init__(self) -> None:
        p = self.problem
        layout_a, layout_b = p.layout[0], p.layout[1]
        self.op_a, self.lda = (CUBLAS_OP_N, p.m) if layout_a == "n" else (CUBLAS_OP_T, p.k)
        self.op_b, self.ldb = (CUBLAS_OP_N, p.k) if layout_b == "n" else (CUBLAS_OP_T, p.n)
        self.ldc = p.m
        self.strides = (p.m * p.k, p.k * p.n, p.m * p.n)
        self.compute_type = COMPUTE_TYPES[p.dtype]
        storage = "f32" if p.dtype == "tf32" else p.dtype
        out = p.out_dtype or storage
        self.types = (DATA_TYPES[storage], DATA_TYPES[storage], DATA_TYPES[out])
        # Host scalars of the compute type's precision (the default host pointer mode), kept
        # alive with the call.
        scalar = np.float64 if self.compute_type == COMPUTE_TYPES["f64"] else np.float32
        self.alpha, self.beta = np.ones(1, scalar), np.zeros(1, scalar)
        self._library: tuple[Any, int] | None = None    # resolved at the first call

    def __call__(self) -> None:
        if self._library is None:
            self._library = cublas_library()
        cublas, handle = self._library
        p = self.problem
        a, b, c = (device_pointer(x) for x in self.stored)
        cublas.gemmStridedBatchedEx(
            handle, self.op_a, self.op_b, p.m, p.n, p.k, self.alpha.ctypes.data,
            a, self.types[0], self.lda, self.strides[0],
            b, self.types[1], self.ldb, self.strides[1],
            self.beta.ctypes.data,
            c, self.types[2], self.ldc, self.strides[2],
            p.batch, self.compute_type, CUBLAS_GEMM_DEFAULT)
