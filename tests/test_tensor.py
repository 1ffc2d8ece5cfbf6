"""Tensor behaviour beyond single-op gradients: the graph walk, modes, dtypes, errors."""
import numpy as np
import pytest

import zengrad as zg
from zengrad import functional as F


def test_tensor_dtype_rules():
    assert zg.tensor([1.0, 2.0]).dtype == np.float32
    assert zg.tensor(np.zeros(3, np.float64)).dtype == np.float32
    assert zg.tensor([1.0], dtype="float64").dtype == np.float64
    assert zg.tensor([1, 2]).dtype.kind == "i"
    with pytest.raises(TypeError, match="'dtype'"):
        zg.tensor([1.0], dtype=np.float16)
    with pytest.raises(TypeError, match="require grad"):
        zg.tensor([1, 2], requires_grad=True)
    with pytest.raises(ValueError, match="'device'"):
        zg.tensor([1.0], device="tpu")


def test_tensor_copies_its_data():
    source = np.ones(3, np.float32)
    t = zg.tensor(source)
    t.data += 1
    assert (source == 1).all()


def test_shared_subexpression_accumulates_once_per_use():
    x = zg.tensor([2.0, 3.0], requires_grad=True)
    y = x * x            # used twice below: a diamond in the graph
    (y + y * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, 8 * x.numpy())


def test_gradients_accumulate_across_backward_calls():
    x = zg.tensor([1.0, -2.0], requires_grad=True)
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, [5.0, 5.0])


def test_leaf_gradients_share_memory_with_nothing():
    """Leaves keep fresh gradient arrays without a copy; never one another's, the caller's, or a
    view of either."""
    a, b, c = (zg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True) for _ in range(3))
    g = np.ones((2, 3), np.float32)
    (a + b + c.reshape(3, 2).reshape(2, 3)).backward(g)      # add hands its gradient on as it is
    grads = [a.grad, b.grad, c.grad, g]
    for i, first in enumerate(grads):
        for second in grads[i + 1:]:
            assert not np.shares_memory(first, second)
    a.grad[:] = 5                    # changing one gradient changes nothing else
    assert (b.grad == 1).all() and (c.grad == 1).all() and (g == 1).all()
    leaf = zg.tensor([1.0, 2.0], requires_grad=True)
    seed = np.array([3.0, 4.0], np.float32)
    leaf.backward(seed)
    assert leaf.grad is not seed and not np.shares_memory(leaf.grad, seed)
    w = zg.tensor(np.ones((3, 2)), requires_grad=True)
    (zg.tensor(np.ones((4, 3))) @ w).sum().backward()        # a kernel's fresh array: kept as it is
    np.testing.assert_allclose(w.grad, 4.0)


def test_deep_chain_needs_no_recursion():
    x = zg.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y + 1.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0])


def test_no_grad_records_nothing_and_restores():
    x = zg.tensor([1.0], requires_grad=True)
    with zg.no_grad():
        y = x * 2.0
        assert not zg.is_grad_enabled()
    assert zg.is_grad_enabled()
    assert not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_detach_cuts_the_graph():
    x = zg.tensor([3.0], requires_grad=True)
    y = (x * 2.0).detach() * x
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [6.0])


def test_backward_of_non_scalar_needs_a_grad_of_its_shape():
    x = zg.tensor(np.ones((2, 2)), requires_grad=True)
    y = x * 2.0
    with pytest.raises(ValueError, match="'grad'"):
        y.backward()
    with pytest.raises(ValueError, match="shape"):
        y.backward(np.ones(3))
    y.backward(np.full((2, 2), 0.5))
    np.testing.assert_allclose(x.grad, np.ones((2, 2)))


def test_mixing_float32_and_float64_is_refused():
    a = zg.tensor([1.0])
    b = zg.tensor([1.0], dtype=np.float64)
    with pytest.raises(TypeError, match="float32 and float64"):
        a + b


def test_numpy_operands_become_constants_of_the_tensor_dtype():
    x = zg.tensor([1.0, 2.0], requires_grad=True)
    y = np.array([2.0, 4.0]) * x  # ndarray on the left: Tensor's reflected operator runs
    assert isinstance(y, zg.Tensor) and y.dtype == np.float32
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])


def test_only_leaves_keep_gradients():
    x = zg.tensor([1.0], requires_grad=True)
    hidden = x * 2.0
    (hidden * 3.0).sum().backward()
    assert hidden.grad is None and x.grad is not None


def test_cross_entropy_rejects_bad_labels():
    logits = zg.tensor(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"'labels' must be class indices in \[0, 4\)"):
        F.cross_entropy(logits, np.array([0, 4, 1]))
    with pytest.raises(TypeError, match="'labels' must be integer class indices"):
        F.cross_entropy(logits, np.array([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="'labels'"):
        F.cross_entropy(logits, np.array([0, 1]))


def test_cross_entropy_is_stable_for_huge_logits():
    logits = zg.tensor([[1e4, 0.0], [0.0, -1e4]], requires_grad=True)
    loss = F.cross_entropy(logits, np.array([1, 1]))
    assert np.isfinite(loss.item())
    loss.backward()
    assert np.isfinite(logits.grad).all()


def test_dropout_scales_and_is_off_at_inference():
    x = zg.tensor(np.ones((200, 50)))
    assert F.dropout(x, 0.5, training=False) is x
    zg.manual_seed(0)
    y = F.dropout(x, 0.5, training=True).numpy()
    assert set(np.unique(y)) == {0.0, 2.0}
    assert abs((y == 0).mean() - 0.5) < 0.02
    with pytest.raises(ValueError, match="'rate'"):
        F.dropout(x, 1.0, training=True)


def test_batch_norm_updates_running_statistics_like_keras():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3)).astype(np.float32) * 2 + 1
    mean, var = np.zeros(3, np.float32), np.ones(3, np.float32)
    F.batch_norm(zg.tensor(x), zg.tensor(np.ones(3)), zg.tensor(np.zeros(3)), mean, var, training=True,
                 momentum=0.9, epsilon=1e-3)
    np.testing.assert_allclose(mean, 0.1 * x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(var, 0.9 + 0.1 * x.var(axis=0), rtol=1e-5)


def test_functional_refuses_other_types():
    with pytest.raises(TypeError, match="'x'"):
        F.relu([1.0, 2.0])
