"""The compiled kernels of compact storage's int8 layers (numba): the int8 matrix product,
float32 rows times an int8 matrix with one float32 scale per column without a float32 copy of
the matrix, and the LSTM gates.

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

**The gates** of an int8 layer are compiled too (:func:`lstm_gates`): bias, the four gates and
the new cell and output of every row in one vectorized pass instead of numpy's ten calls: 3.3
against 16.1 us for 2 rows of 512 units, 11.4 against 41.9 us for 9 (medians of 300,
2026-12-08). Its tanh is Eigen's rational approximation (the one TensorFlow's CPU kernels use:
numba has no vectorized tanh without Intel's SVML): the new cells and outputs are within 4e-7 of
float64 numpy's on the tests' pre-activations (most of it where the approximation levels off at
1 - 2.6e-7), and the load-time check covers it with the product. A NaN pre-activation comes out
near 1 here (the clamp takes it to the bound), NaN in numpy; a model's weights are never NaN
(model.serialization refuses them).

numba is a dependency; without it (an install that lacks it) :func:`int8_kernel` returns None
and compact storage widens the matrices as before. The compiled kernels are cached on disk
(``cache=True``, numba's cache folder), so only a process that finds no cache compiles them
(2.4-2.8 s for both; reading them from the cache and importing numba take 0.44-0.55 s; three
runs each, 2026-12-08). The Discord bot loads them before it connects
(``open_app(serving=True)``): at the first compact model's load the product alone held the GIL
for ~0.1 s while replies waited.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
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
# z (rows, 4U), bias (4U,), c_prev (at least rows - 1 rows of U; any shape for one row),
# h_out and c_out (rows, U), float32.
LstmGates = Callable[
    [
        npt.NDArray[np.float32],
        npt.NDArray[np.float32],
        npt.NDArray[np.float32],
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


def _lstm_gates_py(  # pragma: no cover
    z: Any, bias: Any, c_prev: Any, h_out: Any, c_out: Any
) -> None:
    """The LSTM's gates and new state of each row of ``z + bias`` (columns i, f, o, g; row 0
    starts from a zero cell, row r > 0 continues ``c_prev[r - 1]``): c = i g + f c_prev,
    h = o tanh(c). One pass over the rows in compiled code instead of numpy's ten. Compiled by
    numba (:func:`int8_kernel`); tanh is Eigen's rational approximation (TensorFlow's CPU
    kernels use it), which vectorizes, where a call to libm's would not."""

    def tanh(x: Any) -> Any:
        # Eigen's generic_fast_tanh_float: odd 13th / even 6th degree rational function,
        # its input clamped to [-7.9, 7.9] (where it levels off, 2.6e-7 short of +-1), x
        # itself below 4e-4. Branch-free, so the loops below vectorize.
        bound = np.float32(7.90531110763549805)
        y = x if x < bound else bound
        y = y if y > -bound else -bound
        y2 = y * y
        p = np.float32(-2.76076847742355e-16)
        p = p * y2 + np.float32(2.00018790482477e-13)
        p = p * y2 + np.float32(-8.60467152213735e-11)
        p = p * y2 + np.float32(5.12229709037114e-08)
        p = p * y2 + np.float32(1.48572235717979e-05)
        p = p * y2 + np.float32(6.37261928875436e-04)
        p = p * y2 + np.float32(4.89352455891786e-03)
        q = np.float32(1.19825839466702e-06)
        q = q * y2 + np.float32(1.18534705686654e-04)
        q = q * y2 + np.float32(2.26843463243900e-03)
        q = q * y2 + np.float32(4.89352518554385e-03)
        r = y * p / q
        return y if y2 < np.float32(1.6e-7) else r

    half = np.float32(0.5)
    rows, width = z.shape
    u = width // 4
    for r in range(rows):
        zr, h, c = z[r], h_out[r], c_out[r]
        # Row 0 in a loop of its own: it has no forget gate to compute nor previous cell to
        # read (a first symbol has none), and neither loop branches, so both vectorize.
        if r == 0:
            for j in range(u):
                i = half * tanh(half * (zr[j] + bias[j])) + half
                o = half * tanh(half * (zr[2 * u + j] + bias[2 * u + j])) + half
                c[j] = i * tanh(zr[3 * u + j] + bias[3 * u + j])
                h[j] = o * tanh(c[j])
        else:
            before = c_prev[r - 1]
            for j in range(u):
                i = half * tanh(half * (zr[j] + bias[j])) + half
                f = half * tanh(half * (zr[u + j] + bias[u + j])) + half
                o = half * tanh(half * (zr[2 * u + j] + bias[2 * u + j])) + half
                c[j] = i * tanh(zr[3 * u + j] + bias[3 * u + j]) + f * before[j]
                h[j] = o * tanh(c[j])


@dataclass(frozen=True)
class Int8Kernels:
    """The compiled kernels of compact storage's int8 layers."""

    product: Int8Product
    gates: LstmGates


@functools.cache
def int8_kernel() -> Int8Kernels | None:
    """The compiled :func:`_int8_product_py` and :func:`_lstm_gates_py` (compiled or read
    from numba's cache now, so the first generation does not wait for them), or None where
    numba is not installed."""
    try:
        import numba
    except ImportError:
        logger.warning("numba is not installed: compact models widen int8 matrices to float32")
        return None
    try:
        return _compiled(numba, cache=True)
    except RuntimeError:  # no writable cache folder: compile in memory
        logger.warning("numba cannot cache the int8 kernel: compiling it for this process")
        return _compiled(numba, cache=False)


def _compiled(numba: Any, *, cache: bool) -> Int8Kernels:
    """Both kernels compiled (or read from the cache) now, each run once on an example."""
    # reassoc + contract: vectorized sums and fused multiply-adds; no assumption about NaN.
    # error_model="numpy": a division by zero gives inf as in numpy instead of raising, which
    # lets the divisions of tanh vectorize (its denominators are >= 4.9e-3 anyway).
    jit = numba.njit(
        cache=cache,
        nogil=True,
        boundscheck=False,
        fastmath={"reassoc", "contract"},
        error_model="numpy",
    )
    kernels = Int8Kernels(jit(_int8_product_py), jit(_lstm_gates_py))
    h = np.zeros((1, 4), dtype=np.float32)
    kernels.product(h, np.zeros((4, 4), dtype=np.int8), np.ones(4, dtype=np.float32), h.copy())
    state = np.zeros((1, 1), dtype=np.float32)
    kernels.gates(h, np.zeros(4, dtype=np.float32), state, state.copy(), state.copy())
    return kernels


def int8_product(
    h: npt.NDArray[np.float32],
    matrix: npt.NDArray[np.int8],
    scale: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
) -> None:
    """``out += (h @ matrix.T) * scale`` with the compiled kernel (numba required)."""
    _required().product(h, matrix, scale, out)


def lstm_gates(
    z: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    c_prev: npt.NDArray[np.float32],
    h_out: npt.NDArray[np.float32],
    c_out: npt.NDArray[np.float32],
) -> None:
    """The gates and new states of an LSTM step's rows (see :func:`_lstm_gates_py`; numba
    required)."""
    _required().gates(z, bias, c_prev, h_out, c_out)


def _required() -> Int8Kernels:
    kernels = int8_kernel()
    if kernels is None:
        raise RuntimeError("compact storage's int8 kernels need numba")
    return kernels
