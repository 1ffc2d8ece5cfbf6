"""relu and relu_backward on every backend against the reference, NaN and signed zeros included."""
import importlib

import numpy as np
import pytest

import zengrad as zg
from zengrad.kernels import _backends
from zengrad.kernels import _validate as V
from zengrad.kernels import reference as R

DTYPES = [np.float32, np.float64]
SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4, 5), (70_001,), (64, 26, 26, 32)]


def special_values(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype)
    flat[: min(flat.size, 5)] = specials[: min(flat.size, 5)]
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_relu(backend, rng, dtype, shape):
    x = special_values(rng, shape, dtype)
    got = zg.kernels.relu(x)
    assert got.shape == x.shape and got.dtype == dtype
    np.testing.assert_array_equal(got, R.relu(x))
    np.testing.assert_array_equal(got, np.maximum(x, 0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_relu_backward(backend, rng, dtype, shape):
    y = np.asarray(np.maximum(special_values(rng, shape, dtype), dtype(0)))
    dy = rng.standard_normal(shape).astype(dtype)
    got = zg.kernels.relu_backward(dy, y)
    np.testing.assert_array_equal(got, R.relu_backward(dy, y))
    np.testing.assert_array_equal(got, np.where(y > 0, dy, 0))


def test_relu_does_not_modify_its_input(backend, rng):
    x = rng.standard_normal((100,)).astype(np.float32)
    before = x.copy()
    zg.kernels.relu(x)
    np.testing.assert_array_equal(x, before)


def test_relu_backward_errors(backend):
    with pytest.raises(ValueError, match="argument 'y'"):
        zg.kernels.relu_backward(np.ones(3, np.float32), np.ones(4, np.float32))
    with pytest.raises(TypeError, match="argument 'y'"):
        zg.kernels.relu_backward(np.ones(3, np.float32), np.ones(3, np.float64))
    with pytest.raises(TypeError, match="argument 'x'"):
        zg.kernels.relu(np.ones(3, np.int32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (3, 5), (70_001,), (3, 3, 32, 64)], ids=str)
def test_adam_update(backend, rng, dtype, shape):
    """In place on param, m, v; the same numbers as the reference (to rounding: sqrt and
    division may be evaluated with FMA or wider registers), over three steps."""
    param, grad = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    m, v = np.zeros(shape, dtype), np.zeros(shape, dtype)
    p_ref, m_ref, v_ref = param.copy(), m.copy(), v.copy()
    for step in range(1, 4):
        alpha = 1e-3 * np.sqrt(1 - 0.999**step) / (1 - 0.9**step)
        assert zg.kernels.adam_update(param, grad, m, v, alpha=alpha) is None
        R.adam_update(p_ref, grad, m_ref, v_ref, alpha=alpha)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(m, m_ref, rtol=rtol)
    np.testing.assert_allclose(v, v_ref, rtol=rtol)
    np.testing.assert_allclose(param, p_ref, rtol=rtol, atol=rtol * 1e-3)
    assert not np.array_equal(param, rng.standard_normal(shape))  # it moved


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_stores_tiny_moments_as_zero(backend, dtype):
    """Moments that decay below the smallest normal number are stored as 0, as the reference
    does: denormals would make every later step take the FPU's slow path, and are far below
    what epsilon lets reach the update. Normal moments, zeros and NaN are left alone."""
    tiny = np.finfo(dtype).tiny
    m = np.array([tiny * 1.05, -tiny * 1.05, tiny * 1.05, 0.5, 0.0, np.nan, tiny * 1.05], dtype)
    v = np.array([tiny * 1.0005, tiny * 1.0005, 0.25, 0.25, 0.0, 0.25, np.nan], dtype)
    grad = np.zeros_like(m)
    param = np.ones_like(m)
    refs = [a.copy() for a in (param, grad, m, v)]
    zg.kernels.adam_update(param, grad, m, v, alpha=1e-3)   # m *= 0.9 and v *= 0.999: below tiny
    R.adam_update(*refs, alpha=1e-3)
    expected_m = np.array([0, 0, 0, 0.45, 0, np.nan, 0], dtype)
    np.testing.assert_array_equal(m, expected_m)
    np.testing.assert_array_equal(refs[2], expected_m)
    assert v[0] == 0 and v[1] == 0 and v[2] > 0 and np.isnan(v[6]) and np.isnan(refs[3][6])
    np.testing.assert_allclose(param, refs[0], rtol=1e-6)


def test_adam_update_errors(backend):
    p, g = np.zeros(4, np.float32), np.ones(4, np.float32)
    m, v = np.zeros(4, np.float32), np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="argument 'm'"):
        zg.kernels.adam_update(p, g, np.zeros(5, np.float32), v, alpha=1e-3)
    with pytest.raises(TypeError, match="argument 'v'"):
        zg.kernels.adam_update(p, g, m, np.zeros(4), alpha=1e-3)
    frozen = np.zeros(4, np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="argument 'param'"):
        zg.kernels.adam_update(frozen, g, m, v, alpha=1e-3)
    with pytest.raises(ValueError, match="argument 'v'"):
        zg.kernels.adam_update(p, g, m, m, alpha=1e-3)
    with pytest.raises(ValueError, match="argument 'param'"):
        zg.kernels.adam_update(np.zeros(8, np.float32)[::2], g, m, v, alpha=1e-3)
    with pytest.raises(ValueError, match="argument 'alpha'"):
        zg.kernels.adam_update(p, g, m, v, alpha=float("nan"))


SHAPES_OF_A_MODEL = [(3, 3, 1, 8), (8,), (70_001,), (5, 7), (1,)]


def _model_state(rng, dtype):
    return [[rng.standard_normal(s).astype(dtype) * scale for s in SHAPES_OF_A_MODEL] for scale in (1, 1, 0.1)] + [
        [rng.random(s).astype(dtype) for s in SHAPES_OF_A_MODEL]]


@pytest.mark.parametrize("as_tuples", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_on_lists_is_each_alone(backend, rng, dtype, as_tuples):
    """Four lists of arrays: every parameter gets the bits of its own call (and the oracle's
    numbers, from its own lists)."""
    lists = _model_state(rng, dtype)
    alone, oracle = ([[a.copy() for a in arrays] for arrays in lists] for _ in range(2))
    for p, g, m, v in zip(*alone):
        zg.kernels.adam_update(p, g, m, v, alpha=1e-3)
    given = [tuple(arrays) for arrays in lists] if as_tuples else lists
    assert zg.kernels.adam_update(*given, alpha=1e-3) is None
    R.adam_update(*oracle, alpha=1e-3)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    for got, want, expected in zip(lists, alone, oracle):
        for a, b, c in zip(got, want, expected):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_allclose(a, c, rtol=rtol, atol=rtol)   # values of order 1, some cancelled
    assert zg.kernels.adam_update([], [], [], [], alpha=1e-3) is None


def test_adam_update_on_lists_checks_all_before_updating_any(backend, rng):
    """A bad array anywhere in the lists is named with its index, and no parameter is updated."""
    lists = _model_state(rng, np.float32)
    saved = [[a.copy() for a in arrays] for arrays in lists]
    bad_m = list(lists[2])
    bad_m[3] = np.zeros((5, 6), np.float32)
    with pytest.raises(ValueError, match=r"argument 'm\[3\]' must be of shape \(5, 7\)"):
        zg.kernels.adam_update(lists[0], lists[1], bad_m, lists[3], alpha=1e-3)
    bad_v = list(lists[3])
    bad_v[4] = np.zeros(1)
    with pytest.raises(TypeError, match=r"argument 'v\[4\]'"):
        zg.kernels.adam_update(lists[0], lists[1], lists[2], bad_v, alpha=1e-3)
    with pytest.raises(ValueError, match=r"argument 'grad' must be 5 arrays like 'param', got 4"):
        zg.kernels.adam_update(lists[0], lists[1][:4], lists[2], lists[3], alpha=1e-3)
    with pytest.raises(TypeError, match=r"argument 'v' must be a list of arrays like 'param', got ndarray"):
        zg.kernels.adam_update(lists[0], lists[1], lists[2], lists[3][0], alpha=1e-3)
    for got, want in zip(lists, saved):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


# ---- the compiled backend's fast path for adam_update: the common call, straight to the kernel ----

CPU = importlib.import_module("zengrad._cpu") if "cpp" in zg.kernels.available_backends() else None
ADAM = dict(alpha=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7)


def _adam_state(rng, dtype=np.float32, shape=(7, 5)):
    return [rng.standard_normal(shape).astype(dtype) for _ in range(2)] + [
        rng.standard_normal(shape).astype(dtype) * 0.1, rng.random(shape).astype(dtype)]


@pytest.mark.skipif(CPU is None, reason="needs the cpp backend")
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_fast_path_takes_the_common_call(rng, dtype):
    """Plain arrays: adam_update updates in place, the same bits as the general path."""
    p, g, m, v = _adam_state(rng, dtype)
    general = [a.copy() for a in (p, g, m, v)]
    _backends._load("cpp").adam_update(*general, *ADAM.values())
    assert CPU.adam_update(p, g, m, v, *ADAM.values()) is True
    for got, want in zip((p, g, m, v), general):
        np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(CPU is None, reason="needs the cpp backend")
def test_adam_fast_path_takes_lists(rng, monkeypatch):
    """A whole model's lists in one call to the kernel, without the Python checks."""
    lists = _model_state(rng, np.float32)
    alone = [[a.copy() for a in arrays] for arrays in lists]
    for p, g, m, v in zip(*alone):
        assert CPU.adam_update(p, g, m, v, *ADAM.values()) is True
    monkeypatch.setattr(V, "adam_args", None)   # the Python checks are not reached
    zg.kernels.adam_update(*lists, **ADAM)
    for got, want in zip(lists, alone):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    bad = [list(arrays) for arrays in lists]
    bad[2][1] = bad[3][1]   # m is v for one parameter: declined, nothing updated
    before = [[np.array(a) for a in arrays] for arrays in bad]
    assert CPU.adam_update(*bad, *ADAM.values()) is False
    for got, want in zip(bad, before):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


ADAM_FALLBACKS = {
    "param a list": lambda p, g, m, v: ([1.0], g, m, v, *ADAM.values()),
    "grad float64": lambda p, g, m, v: (p, g.astype(np.float64), m, v, *ADAM.values()),
    "m byte-swapped": lambda p, g, m, v: (p, g, m.astype(m.dtype.newbyteorder()), v, *ADAM.values()),
    "m of another shape": lambda p, g, m, v: (p, g, m[:3], v, *ADAM.values()),
    "v not contiguous": lambda p, g, m, v: (p, g, m, np.asfortranarray(np.repeat(v, 2, axis=1))[:, ::2],
                                            *ADAM.values()),
    "param read-only": lambda p, g, m, v: (np.frombuffer(p.tobytes(), p.dtype).reshape(p.shape), g, m, v,
                                           *ADAM.values()),
    "m is v": lambda p, g, m, v: (p, g, m, m, *ADAM.values()),
    "alpha a NumPy scalar": lambda p, g, m, v: (p, g, m, v, np.float32(1e-3), 0.9, 0.999, 1e-7),
    "epsilon infinite": lambda p, g, m, v: (p, g, m, v, 1e-3, 0.9, 0.999, float("inf")),
    "beta_1 a bool": lambda p, g, m, v: (p, g, m, v, 1e-3, True, 0.999, 1e-7),
}


@pytest.mark.skipif(CPU is None, reason="needs the cpp backend")
@pytest.mark.parametrize("case", sorted(ADAM_FALLBACKS))
def test_adam_fast_path_leaves_the_rest_to_the_checks(rng, case):
    """Anything but the common call returns False (the general path then checks) and changes nothing."""
    args = ADAM_FALLBACKS[case](*_adam_state(rng))
    before = [np.array(a) if isinstance(a, np.ndarray) else None for a in args[:4]]
    assert CPU.adam_update(*args) is False
    for a, saved in zip(args[:4], before):
        if saved is not None:
            np.testing.assert_array_equal(a, saved)
