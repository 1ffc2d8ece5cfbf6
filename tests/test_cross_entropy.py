"""softmax_cross_entropy and its backward on every backend against the reference."""
import numpy as np
import pytest

import zengrad as zg
from zengrad import functional as F
from zengrad.kernels import reference as R
from tolerances import assert_close, assert_exact

K = zg.kernels
DTYPES = [np.float32, np.float64]
SHAPES = [(0, 3), (1, 1), (1, 2), (3, 10), (32, 10), (65, 17), (7, 1000)]


def batch(rng, shape, dtype, scale=3.0):
    logits = (scale * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    return logits, labels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_matches_the_reference(backend, rng, dtype, shape):
    logits, labels = batch(rng, shape, dtype)
    loss, probs = K.softmax_cross_entropy(logits, labels)
    want_loss, want_probs = R.softmax_cross_entropy(logits, labels)
    assert loss.shape == () and loss.dtype == dtype and probs.shape == shape and probs.dtype == dtype
    assert_close(probs, want_probs, shape[1])
    if shape[0]:
        # each row's term is a difference of terms as large as the logits: its rounding scales with them
        scale = 1 + float(np.abs(logits).max())
        assert_close(loss, want_loss, shape[1] * shape[0], scale=scale)
        # against the definition, in float64
        z = logits.astype(np.float64)
        logp = z - z.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        assert_close(loss, -logp[np.arange(shape[0]), labels].mean(), shape[1] * shape[0], dtype=dtype, scale=scale)
    else:
        assert np.isnan(loss)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward_matches_the_reference_bit_for_bit(backend, rng, dtype, shape):
    logits, labels = batch(rng, shape, dtype)
    probs = R.softmax_cross_entropy(logits, labels)[1]
    dloss = np.asarray(0.75, dtype)
    got = K.softmax_cross_entropy_backward(probs, labels, dloss)
    assert got.shape == shape and got.dtype == dtype
    assert_exact(got, R.softmax_cross_entropy_backward(probs, labels, dloss))
    assert_exact(K.softmax_cross_entropy_backward(probs, labels, 0.75), got)   # a number for dloss


def test_extreme_logits(backend):
    logits = np.array([[1e4, 0.0, -1e4], [np.inf, 1.0, 2.0], [np.nan, 1.0, 2.0], [5.0, 5.0, 5.0]], np.float32)
    labels = np.array([1, 2, 0, 1])
    loss_rows = [K.softmax_cross_entropy(logits[i:i + 1], labels[i:i + 1])[0] for i in range(4)]
    assert loss_rows[0] == np.float32(1e4)          # log-sum-exp taken from the maximum: no overflow
    assert np.isnan(loss_rows[1]) and np.isnan(loss_rows[2])
    assert_close(loss_rows[3], np.log(3.0), 3, dtype=np.float32)
    loss, probs = K.softmax_cross_entropy(logits, labels)
    assert np.isnan(loss) and np.isnan(probs[2]).all()
    np.testing.assert_array_equal(probs[0], [1, 0, 0])


@pytest.mark.parametrize("labels_dtype", [np.int8, np.int32, np.uint16, np.int64])
def test_labels_of_any_integer_dtype(backend, rng, labels_dtype):
    logits, labels = batch(rng, (9, 5), np.float32)
    want = R.softmax_cross_entropy(logits, labels)
    got = K.softmax_cross_entropy(logits, labels.astype(labels_dtype))
    assert_exact(got[0], K.softmax_cross_entropy(logits, labels)[0])
    assert_close(got[1], want[1], 5)
    strided = np.repeat(labels, 2)[::2]
    assert_exact(K.softmax_cross_entropy(logits, strided)[1], got[1])


@pytest.mark.parametrize("bad", [-1, 5, 2**40])
def test_labels_out_of_range_are_refused_by_name(backend, rng, bad):
    logits, labels = batch(rng, (9, 5), np.float32)
    labels[4] = bad
    with pytest.raises(ValueError, match=r"argument 'labels' must be class indices in \[0, 5\)"):
        K.softmax_cross_entropy(logits, labels)
    with pytest.raises(ValueError, match=r"argument 'labels' must be class indices in \[0, 5\)"):
        K.softmax_cross_entropy_backward(logits, labels, np.asarray(1.0, np.float32))


def test_argument_errors(backend):
    z, labels, one = np.zeros((3, 4), np.float32), np.array([0, 1, 2]), np.asarray(1.0, np.float32)
    cases = [
        (TypeError, "'logits'", lambda: K.softmax_cross_entropy(z.tolist(), labels)),
        (ValueError, "'logits' must be 2-dimensional", lambda: K.softmax_cross_entropy(z[0], labels)),
        (ValueError, "'logits' must be of shape", lambda: K.softmax_cross_entropy(z[:, :0], labels)),
        (TypeError, "'logits' must be of dtype", lambda: K.softmax_cross_entropy(z.astype(np.int32), labels)),
        (TypeError, "'labels' must be a NumPy", lambda: K.softmax_cross_entropy(z, [0, 1, 2])),
        (TypeError, "'labels' must be integer", lambda: K.softmax_cross_entropy(z, labels.astype(np.float32))),
        (ValueError, "'labels' must be of shape", lambda: K.softmax_cross_entropy(z, labels[:2])),
        (ValueError, "'labels' must be of shape", lambda: K.softmax_cross_entropy(z, labels[:, None])),
        (TypeError, "'dloss' must be", lambda: K.softmax_cross_entropy_backward(z, labels, one.astype(np.float64))),
        (ValueError, "'dloss' must be 0-dimensional", lambda: K.softmax_cross_entropy_backward(z, labels, one[None])),
        (TypeError, "'probs'", lambda: K.softmax_cross_entropy_backward(None, labels, one)),
        (TypeError, "'dloss' must be a NumPy", lambda: K.softmax_cross_entropy_backward(z, labels, True)),
        (ValueError, "'dloss' must be finite", lambda: K.softmax_cross_entropy_backward(z, labels, float("nan"))),
    ]
    for exc, message, call in cases:
        with pytest.raises(exc, match=message):
            call()


def test_inputs_are_not_modified(backend, rng):
    logits, labels = batch(rng, (6, 4), np.float64)
    saved = logits.copy(), labels.copy()
    loss, probs = K.softmax_cross_entropy(logits, labels)
    probs_saved = probs.copy()
    K.softmax_cross_entropy_backward(probs, labels, np.asarray(1.0))
    assert_exact(logits, saved[0])
    assert_exact(labels, saved[1])
    assert_exact(probs, probs_saved)


def test_cross_entropy_and_softmax_give_the_loss_and_the_predictions(backend, rng):
    logits, labels = batch(rng, (8, 5), np.float64)
    z = zg.tensor(logits, requires_grad=True)
    loss, probs = F.cross_entropy_and_softmax(z, labels)
    assert_close(probs, F.softmax(zg.tensor(logits)).data, 5)
    loss.backward()
    expected = zg.tensor(logits, requires_grad=True)
    F.cross_entropy(expected, labels).backward()
    assert_exact(z.grad, expected.grad)
    assert_exact(loss.data, F.cross_entropy(zg.tensor(logits), labels).data)
