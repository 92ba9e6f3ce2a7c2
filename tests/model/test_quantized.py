"""Compact storage multiplies its int8 recurrent matrices as int8 (model.quantized, issue 27):
the compiled kernel agrees with numpy's float product of the widened matrix, and a compact
network keeps the int8 matrices instead of float32 copies."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from model import GenerationOptions, TrainedModel, generate
from model.forward import NumpyLSTM
from model.quantized import int8_kernel, int8_product, lstm_gates
from tests.support import synthetic_model


@pytest.mark.parametrize("rows", range(1, 10))
@pytest.mark.parametrize(("inner", "columns"), [(1, 1), (7, 13), (512, 2048), (33, 130)])
def test_int8_product_matches_numpy(rows: int, inner: int, columns: int) -> None:
    rng = np.random.default_rng(rows * 1000 + inner)
    h = np.tanh(rng.standard_normal((rows, inner))).astype(np.float32)
    matrix = rng.integers(-127, 128, (columns, inner)).astype(np.int8)
    scale = rng.uniform(1e-4, 1e-2, columns).astype(np.float32)
    out = rng.standard_normal((rows, columns)).astype(np.float32)
    widened = matrix.astype(np.float64) * scale[:, None]
    expected = out + h.astype(np.float64) @ widened.T
    int8_product(h, matrix, scale, out)
    # float32 sums in another order than float64's: within float32 rounding of the terms.
    bound = 1e-6 * (np.abs(h) @ np.abs(widened).T + np.abs(out)) + 1e-7
    assert np.all(np.abs(out - expected) <= bound)


def test_row_slices_of_a_larger_state_are_read_in_place() -> None:
    """The stepper passes row slices (its suffix states, the gates' rows after the first)."""
    rng = np.random.default_rng(7)
    h = rng.standard_normal((6, 64)).astype(np.float32)
    matrix = rng.integers(-127, 128, (256, 64)).astype(np.int8)
    scale = np.full(256, 0.01, dtype=np.float32)
    z = np.zeros((6, 256), dtype=np.float32)
    int8_product(h[:5], matrix, scale, z[1:])
    assert np.all(z[0] == 0)
    np.testing.assert_allclose(z[1:], h[:5] @ (matrix.T * np.float32(0.01)), rtol=1e-5, atol=1e-5)


def test_compact_network_keeps_its_recurrent_matrices_int8(tiny_model: TrainedModel) -> None:
    assert int8_kernel() is not None  # numba is a dependency
    compact = NumpyLSTM(tiny_model, compact=True)
    assert compact.precision == "int8"
    units = tiny_model.config.units
    layer = compact.weights().layers[0]
    assert layer.blocks == ()
    assert layer.recurrent_int8 is not None and layer.recurrent_int8.dtype == np.int8
    assert layer.recurrent_int8.shape == (4 * units, units)
    # The float32 copies a reply makes leave the int8 matrices out; widened, they count 4x.
    widened = NumpyLSTM(tiny_model, compact=True, int8_products=False)
    widened_layer = widened.weights().layers[0]
    assert widened_layer.recurrent_int8 is None and widened_layer.blocks
    assert widened.expanded_nbytes - compact.expanded_nbytes == 4 * 4 * units * units
    # The same storage, multiplied either way, continues the story alike.
    for prompt in (["had", "a", "general"], ["mouse", "mouse", "mouse"], ["the", "cat"]):
        for options in (GenerationOptions(), GenerationOptions(follow_story=False)):
            expected = generate(tiny_model, prompt, options)
            assert generate(tiny_model, prompt, options, network=compact) == expected
            assert generate(tiny_model, prompt, options, network=widened) == expected


def test_without_numba_compact_storage_widens_its_int8_matrices(
    tiny_model: TrainedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """numba missing (an install without it): the int8 matrices are widened to float32 and
    multiplied by BLAS, with the same storage and choices."""
    expected = NumpyLSTM(tiny_model, compact=True)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    int8_kernel.cache_clear()
    try:
        assert int8_kernel() is None
        widened = NumpyLSTM(tiny_model, compact=True)
        assert widened.precision == "int8"
        layer = widened.weights().layers[0]
        assert layer.recurrent_int8 is None and layer.blocks
        assert widened.expanded_nbytes > expected.expanded_nbytes
        assert widened.story_choices() == expected.story_choices()
    finally:
        int8_kernel.cache_clear()


@pytest.mark.parametrize(("rows", "units"), [(1, 512), (2, 512), (9, 512), (3, 16), (2, 7)])
def test_compiled_gates_match_numpy(rows: int, units: int) -> None:
    """The int8 layers' compiled gates (Eigen's rational tanh) against float64 numpy, on
    pre-activations up to +-20 (saturated gates included) and a row 0 that starts from zero."""
    rng = np.random.default_rng(rows * 100 + units)
    z = (rng.standard_normal((rows, 4 * units)) * 5).clip(-20, 20).astype(np.float32)
    bias = rng.standard_normal(4 * units).astype(np.float32)
    c_prev = rng.standard_normal((rows, units)).astype(np.float32)
    h = np.empty((rows, units), dtype=np.float32)
    c = np.empty((rows, units), dtype=np.float32)
    lstm_gates(z, bias, c_prev, h, c)

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-x))

    pre = z.astype(np.float64) + bias
    i, f = sigmoid(pre[:, :units]), sigmoid(pre[:, units : 2 * units])
    o, g = sigmoid(pre[:, 2 * units : 3 * units]), np.tanh(pre[:, 3 * units :])
    expected_c = i * g
    expected_c[1:] += f[1:] * c_prev[: rows - 1]
    expected_h = o * np.tanh(expected_c)
    # Measured up to 3.7e-7 (model.quantized says 4e-7): mostly where Eigen's tanh levels off
    # at 1 - 2.6e-7, plus float32 rounding.
    assert np.abs(c - expected_c).max() < 4e-7
    assert np.abs(h - expected_h).max() < 4e-7


def test_compiled_gates_never_read_a_previous_cell_for_row_0() -> None:
    """Row 0 (the newest suffix, one symbol long) starts from a zero cell: the same with no
    previous cells at all (a first symbol) as with huge ones."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((1, 64)).astype(np.float32)
    bias = rng.standard_normal(64).astype(np.float32)
    results = []
    for c_prev in (np.zeros((0, 0), dtype=np.float32), np.full((1, 16), 1e6, dtype=np.float32)):
        h = np.empty((1, 16), dtype=np.float32)
        c = np.empty((1, 16), dtype=np.float32)
        lstm_gates(z, bias, c_prev, h, c)
        results.append((h, c))
    assert np.array_equal(results[0][0], results[1][0])
    assert np.array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("layers", [1, 2])
def test_int8_layers_step_like_their_widened_copies(layers: int) -> None:
    """Every int8 layer of a compact model (the second reads the first's rows) steps through
    the compiled product and gates like the same storage widened to float32 and run by numpy:
    the states of every suffix, and the logits, within float32 rounding and the tanh's 4e-7."""
    model = synthetic_model([f"w{i}" for i in range(40)], units=32, n_input=4, layers=layers)
    compact = NumpyLSTM(model, compact=True)
    widened = NumpyLSTM(model, compact=True, int8_products=False)
    assert compact.precision == "int8" and compact.int8_products
    assert all(layer.recurrent_int8 is not None for layer in compact.weights().layers)
    ours, theirs = compact.stepper(), widened.stepper()
    for symbol in [3, 7, 7, 1, 0, 39, 12, 5]:  # more than n_input: full windows too
        ours.feed(symbol)
        theirs.feed(symbol)
        for depth in range(layers):
            np.testing.assert_allclose(ours.h[depth], theirs.h[depth], rtol=0, atol=2e-6)
            np.testing.assert_allclose(ours.c[depth], theirs.c[depth], rtol=0, atol=2e-6)
    np.testing.assert_allclose(ours.logits(), theirs.logits(), rtol=0, atol=1e-5)
