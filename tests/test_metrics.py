"""The metrics' running means on the CPU: the short paths (a whole batch of per-sample values, fit's
loss weighted by its batch size, sparse accuracy counted as hits) give what the general paths
give, and the general paths what NumPy gives."""
import numpy as np
import pytest

from zengrad import metrics as M


def general_mean(batches):
    """The running mean through the general path: each batch as a list and its weight an array."""
    mean = M.Mean()
    for values, weight in batches:
        mean.update_state(list(np.atleast_1d(values)), None if weight is None else np.asarray(weight))
    return mean


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_of_batches(rng, dtype):
    batches = [(rng.standard_normal(n).astype(dtype), None) for n in (32, 32, 7)]
    mean = M.Mean()
    for values, _ in batches:
        mean.update_state(values)
    expected = np.concatenate([v.astype(np.float64) for v, _ in batches]).mean()
    assert mean.result() == pytest.approx(expected, rel=1e-15)
    assert mean.result() == general_mean(batches).result()
    assert mean.count == 71


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_of_losses_weighted_by_batch_size(rng, dtype):
    """fit's loss tracker: a 0-d loss a step, weighted by the step's samples."""
    losses = [np.asarray(v, dtype) for v in rng.random(5)]
    sizes = [32, 32, 32, 32, 17]
    mean = M.Mean()
    for loss, size in zip(losses, sizes):
        mean.update_state(loss, sample_weight=size)
    total = sum(float(loss) * size for loss, size in zip(losses, sizes))
    assert mean.result() == total / sum(sizes)
    assert mean.result() == general_mean(zip(losses, sizes)).result()
    float_weights = M.Mean()
    for loss, size in zip(losses, sizes):
        float_weights.update_state(loss, sample_weight=float(size))
    assert float_weights.result() == mean.result()


def test_mean_with_per_sample_weights():
    mean = M.Mean()
    mean.update_state(np.array([1.0, 2.0, 3.0]), sample_weight=np.array([1.0, 0.0, 2.0]))
    assert mean.result() == pytest.approx(7.0 / 3.0)
    mean.reset_state()
    assert mean.result() == 0.0


@pytest.mark.parametrize("n", [32, 256, 257, 1000])   # batches counted in Python, and in NumPy
@pytest.mark.parametrize("labels_dtype", [np.uint8, np.int32, np.int64, np.float32])
def test_sparse_accuracy_counts_hits_as_the_per_sample_function(rng, labels_dtype, n):
    probs = rng.random((n, 10)).astype(np.float32)
    probs[1] = probs[2, 0]                       # ties: the first maximum is the prediction
    probs[3, 4] = probs[4, 7] = np.nan           # NaN: the prediction, as np.argmax
    labels = rng.integers(0, 10, n).astype(labels_dtype)
    labels[:8] = probs[:8].argmax(axis=1)        # some hits for certain
    counted, per_sample = M.SparseCategoricalAccuracy(), M.Mean()
    for _ in range(3):
        counted.update_state(labels, probs)
        per_sample.update_state(M.sparse_categorical_accuracy(labels, probs))
    assert counted.result() == per_sample.result() > 0.05
    assert counted.count == 3 * n


def test_accuracy_picks_its_kind_and_refuses_mismatched_rows(rng):
    probs = rng.random((6, 4)).astype(np.float32)
    labels = probs.argmax(axis=1)
    accuracy = M.Accuracy()
    accuracy.update_state(labels, probs)
    assert accuracy.result() == 1.0
    accuracy.update_state(labels[:, None], probs)          # (N, 1) labels: the same kind
    assert accuracy.result() == 1.0 and accuracy.count == 12
    with pytest.raises(ValueError):                       # 5 labels for 6 rows: not broadcast
        M.SparseCategoricalAccuracy().update_state(labels[:5], probs)
    one = M.SparseCategoricalAccuracy()                   # one label for 6 rows broadcasts as NumPy does
    one.update_state(labels[:1], probs)
    assert one.count == 6
