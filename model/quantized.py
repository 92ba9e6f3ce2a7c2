"""The int8 matrix product of compact storage: float32 rows times an int8 matrix with one
float32 scale per column, compiled by numba, without a float32 copy of the matrix.

numpy has no int8 product kernel (an int8 ``@`` runs numpy's own loops: 2.2 ms for 9 rows
times a 512 x 2048 matrix, against 0.50 ms for float32 with OpenBLAS; bench/RESULTS.md,
2026-12-01), so compact storage used to widen its int8 recurrent matrices to float32 and stream
those 4 MiB from the L3 cache every symbol. :func:`int8_product` reads the 1 MiB int8 matrix
instead (it fits a core's L2 cache), widens a vector of values at a time in registers and
multiplies each with up to four rows: 49-83 us for 1-2 rows and 284-338 us for 9, against
141-414 us and 418-571 us for float32 BLAS, on the busy 2-core machine (bench/RESULTS.md,
2026-12-07).

The matrix is stored transposed, one row per output column (``(columns, inner)``), so each
output is one dot product over contiguous memory. Each dot product is summed in float32 in the
order the compiler vectorizes it (``fastmath`` reassociation), not in BLAS's: results differ
from the float32 product of the widened matrix by float32 rounding (about 1e-6 relative), and
are the same from run to run on one machine. The model cache's load-time check
(model.forward) compares the choices made with this kernel against float32's.

numba is a dependency; without it (an install that lacks it) :func:`int8_kernel` returns None
and compact storage widens the matrices as before. The compiled kernel is cached on disk
(``cache=True``, numba's cache folder), so only a process that finds no cache compiles it
(0.7 s measured; reading it from the cache and importing numba take 0.3 s). The Discord bot
loads it before it connects (``open_app(serving=True)``): at the first compact model's load
it held the GIL for ~0.1 s while replies waited.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

# h (rows, inner) float32, matrix (columns, inner) int8, scale (columns,) float32,
# out (rows, columns) float32: out += (h @ matrix.T) * scale.
Int8Product = Callable[
    [
        npt.NDArray[np.float32],
        npt.NDArray[np.int8],
        npt.NDArray[np.float32],
        npt.NDArray[np.float32],
    ],
    None,
]


def _int8_product_py(h: Any, matrix: Any, scale: Any, out: Any) -> None:  # pragma: no cover
    """out += (h @ matrix.T) * scale, four rows at a time (each int8 value widened once per
    four rows), then two, then one. Compiled by numba (:func:`int8_kernel`)."""
    rows, inner = h.shape
    columns = matrix.shape[0]
    r = 0
    while r + 4 <= rows:
        for j in range(columns):
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            s2 = np.float32(0.0)
            s3 = np.float32(0.0)
            for k in range(inner):
                w = np.float32(matrix[j, k])
                s0 += h[r, k] * w
                s1 += h[r + 1, k] * w
                s2 += h[r + 2, k] * w
                s3 += h[r + 3, k] * w
            sc = scale[j]
            out[r, j] += s0 * sc
            out[r + 1, j] += s1 * sc
            out[r + 2, j] += s2 * sc
            out[r + 3, j] += s3 * sc
        r += 4
    while r + 2 <= rows:
        for j in range(columns):
            s0 = np.float32(0.0)
            s1 = np.float32(0.0)
            for k in range(inner):
                w = np.float32(matrix[j, k])
                s0 += h[r, k] * w
                s1 += h[r + 1, k] * w
            sc = scale[j]
            out[r, j] += s0 * sc
            out[r + 1, j] += s1 * sc
        r += 2
    while r < rows:
        for j in range(columns):
            s0 = np.float32(0.0)
            for k in range(inner):
                s0 += h[r, k] * np.float32(matrix[j, k])
            out[r, j] += s0 * scale[j]
        r += 1


@functools.cache
def int8_kernel() -> Int8Product | None:
    """The compiled :func:`_int8_product_py` (compiled or read from numba's cache now, so the
    first generation does not wait for it), or None where numba is not installed."""
    try:
        import numba
    except ImportError:
        logger.warning("numba is not installed: compact models widen int8 matrices to float32")
        return None
    h = np.zeros((1, 1), dtype=np.float32)
    example = (h, np.zeros((1, 1), dtype=np.int8), np.ones(1, dtype=np.float32), h.copy())
    try:
        compiled = _compiled(numba, cache=True)
        compiled(*example)
    except RuntimeError:  # no writable cache folder: compile in memory
        logger.warning("numba cannot cache the int8 kernel: compiling it for this process")
        compiled = _compiled(numba, cache=False)
        compiled(*example)
    kernel: Int8Product = compiled
    return kernel


def _compiled(numba: Any, *, cache: bool) -> Any:
    # reassoc + contract: vectorized sums and fused multiply-adds; no assumption about NaN.
    fast = {"reassoc", "contract"}
    return numba.njit(cache=cache, nogil=True, boundscheck=False, fastmath=fast)(_int8_product_py)


def int8_product(
    h: npt.NDArray[np.float32],
    matrix: npt.NDArray[np.int8],
    scale: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
) -> None:
    """``out += (h @ matrix.T) * scale`` with the compiled kernel (numba required)."""
    kernel = int8_kernel()
    if kernel is None:
        raise RuntimeError("the int8 product needs numba")
    kernel(h, matrix, scale, out)
