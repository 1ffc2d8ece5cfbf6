"""Every differentiable op against central finite differences, in float64.

One table drives the checks: a row names the op, the shapes of its inputs and how to call it.
Adding an op is adding a row. Each row runs on every available kernel backend.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import zlib

import numpy as np
import pytest

import zengrad as zg
from zengrad import functional as F


@dataclass
class Op:
    name: str
    fn: Callable  # (*tensors) -> Tensor
    shapes: list
    make: Callable = None  # rng, shape -> array; default standard normal
    constant: tuple = ()  # positions of inputs that get no gradient check
    kw: dict = field(default_factory=dict)


def positive(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def probabilities(rng, shape):
    return rng.uniform(0.1, 0.9, shape)


def distinct(rng, shape):
    """Values far apart, so that a max or a ReLU kink is never within the finite-difference step."""
    values = rng.permutation(np.prod(shape)).reshape(shape) * 0.1 - 0.05 * np.prod(shape)
    return values + 0.013


def one_hot(rng, shape):
    return np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]


def seeded_dropout(x):
    zg.manual_seed(7)  # the same mask at every evaluation
    return F.dropout(x, 0.4, training=True)


def batch_norm(training):
    def fn(x, gamma, beta):
        c = x.shape[-1]
        # fresh per call (not updated twice), on x's device (they are updated in place there)
        mean, var = (zg.tensor(v, dtype=x.dtype, device=x.device).data
                     for v in (np.linspace(-0.2, 0.3, c), np.linspace(0.5, 1.5, c)))
        return F.batch_norm(x, gamma, beta, mean, var, training=training, momentum=0.9, epsilon=1e-3)
    return fn


LABELS = np.array([0, 2, 1, 2, 0])

OPS = [
    Op("add-broadcast", lambda a, b: a + b, [(3, 4), (4,)]),
    Op("sub-broadcast", lambda a, b: a - b, [(2, 1, 4), (3, 1)]),
    Op("mul-broadcast", lambda a, b: a * b, [(3, 4), (3, 1)]),
    Op("div", lambda a, b: a / b, [(3, 4), (3, 4)], make=positive),
    Op("scalar-ops", lambda a: (2.0 - a) * 3.0 / 1.5 + 1.0, [(5,)]),
    Op("rdiv", lambda a: 1.0 / a, [(4,)], make=positive),
    Op("pow", lambda a: a ** 3, [(3, 3)]),
    Op("pow-fractional", lambda a: a ** 0.5, [(3, 3)], make=positive),
    Op("neg", lambda a: -a, [(2, 3)]),
    Op("matmul-2d", lambda a, b: a @ b, [(5, 7), (7, 3)]),
    Op("matmul-batched", lambda a, b: a @ b, [(2, 5, 4), (4, 3)]),
    Op("matmul-vector", lambda a, b: a @ b, [(5, 4), (4,)]),
    Op("matmul-vector-left", lambda a, b: a @ b, [(4,), (4, 3)]),
    Op("sum-all", lambda a: a.sum(), [(3, 4)]),
    Op("sum-axis-keepdims", lambda a: a.sum(axis=1, keepdims=True), [(3, 4, 2)]),
    Op("sum-axes", lambda a: a.sum(axis=(0, 2)), [(3, 4, 2)]),
    Op("mean-axis", lambda a: a.mean(axis=-1), [(3, 4)]),
    Op("mean-all", lambda a: a.mean(), [(3, 4)]),
    Op("max-all", lambda a: a.max(), [(3, 4)], make=distinct),
    Op("max-axis", lambda a: a.max(axis=0), [(3, 4)], make=distinct),
    Op("max-axes-keepdims", lambda a: a.max(axis=(0, 2), keepdims=True), [(3, 4, 2)], make=distinct),
    Op("reshape", lambda a: a.reshape(4, 3) * np.arange(12.0).reshape(4, 3), [(3, 4)]),
    Op("transpose", lambda a: a.transpose(2, 0, 1), [(2, 3, 4)]),
    Op("T", lambda a: a.T @ np.ones((2, 1)), [(2, 3)]),
    Op("getitem-slice", lambda a: a[1:, ::2], [(3, 5)]),
    Op("getitem-repeated", lambda a: a[np.array([0, 2, 0, 0])], [(3, 2)]),
    Op("exp", lambda a: a.exp(), [(3, 3)]),
    Op("log", lambda a: a.log(), [(3, 3)], make=positive),
    Op("relu", F.relu, [(4, 5)], make=distinct),
    Op("sigmoid", F.sigmoid, [(4, 5)]),
    Op("sigmoid-large", lambda a: F.sigmoid(a * 30.0), [(4, 5)]),
    Op("tanh", F.tanh, [(4, 5)]),
    Op("softmax", F.softmax, [(3, 5)]),
    Op("softmax-axis0", lambda a: F.softmax(a, axis=0), [(3, 5)]),
    Op("log_softmax", F.log_softmax, [(3, 5)]),
    Op("flatten", lambda a: F.flatten(a) * np.arange(12.0), [(2, 2, 3, 2)]),
    Op("dropout", seeded_dropout, [(4, 6)]),
    Op("linear", F.linear, [(5, 4), (4, 3)]),
    Op("linear-bias", F.linear, [(5, 4), (4, 3), (3,)]),
    Op("linear-bias-relu", lambda x, w, b: F.linear(x, w, b, activation="relu"), [(5, 4), (4, 3), (3,)]),
    Op("conv2d", F.conv2d, [(2, 5, 6, 3), (3, 3, 3, 4)]),
    Op("conv2d-bias-same-stride2", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding="same"),
       [(2, 7, 6, 2), (3, 2, 2, 3), (3,)]),
    Op("conv2d-dilation-explicit-pad", lambda x, w: F.conv2d(x, w, dilation=2, padding=((1, 0), (2, 1))),
       [(1, 7, 7, 2), (2, 3, 2, 2)]),
    Op("conv2d-fused-relu", lambda x, w, b: F.conv2d(x, w, b, padding="same", activation="relu"),
       [(2, 5, 4, 2), (3, 3, 2, 3), (3,)]),
    Op("conv2d-relu-max_pool2d", F.conv2d_relu_max_pool2d, [(2, 6, 7, 2), (3, 3, 2, 3), (3,)]),
    Op("conv2d-relu-max_pool2d-same-overlap", lambda x, w: F.conv2d_relu_max_pool2d(
        x, w, padding="same", pool_size=3, pool_stride=2, pool_padding="same"), [(1, 6, 5, 2), (2, 2, 2, 3)]),
    Op("max_pool2d", F.max_pool2d, [(2, 4, 6, 3)], make=distinct),
    Op("max_pool2d-overlap-same", lambda x: F.max_pool2d(x, 3, stride=2, padding="same"), [(1, 5, 5, 2)],
       make=distinct),
    Op("avg_pool2d", F.avg_pool2d, [(2, 4, 6, 3)]),
    Op("avg_pool2d-same", lambda x: F.avg_pool2d(x, 3, stride=2, padding="same"), [(1, 5, 4, 2)]),
    Op("batch_norm-training", batch_norm(True), [(6, 2, 3), (3,), (3,)]),
    Op("batch_norm-inference", batch_norm(False), [(6, 3), (3,), (3,)]),
    Op("cross_entropy", lambda z: F.cross_entropy(z, LABELS), [(5, 3)]),
    Op("categorical_cross_entropy", F.categorical_cross_entropy, [(5, 3), (5, 3)]),
    Op("categorical_cross_entropy-one-hot", F.categorical_cross_entropy, [(4, 3), (4, 3)], make=one_hot,
       constant=(1,)),
    Op("binary_cross_entropy", F.binary_cross_entropy, [(4, 3), (4, 3)], make=probabilities),
    Op("binary_cross_entropy_with_logits", F.binary_cross_entropy_with_logits, [(4, 3), (4, 3)]),
    Op("mse_loss", F.mse_loss, [(4, 3), (4, 3)]),
]


def numerical_grad(f, arrays, i, eps=1e-6):
    grad = np.zeros_like(arrays[i])
    for index in np.ndindex(arrays[i].shape):
        saved = arrays[i][index]
        arrays[i][index] = saved + eps
        plus = f()
        arrays[i][index] = saved - eps
        minus = f()
        arrays[i][index] = saved
        grad[index] = (plus - minus) / (2 * eps)
    return grad


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_gradient(backend, op):
    rng = np.random.default_rng(zlib.crc32(op.name.encode()))
    make = op.make or (lambda r, s: r.standard_normal(s))
    arrays = [np.asarray(make(rng, shape), dtype=np.float64) for shape in op.shapes]
    if op.make is one_hot:
        arrays[0] = rng.standard_normal(op.shapes[0])
    weights = None

    def scalar_loss():
        nonlocal weights
        out = op.fn(*[zg.tensor(a, dtype=np.float64) for a in arrays]).numpy()
        if weights is None:
            weights = np.random.default_rng(1).standard_normal(out.shape)
        return float((out * weights).sum())

    scalar_loss()
    tensors = [zg.tensor(a, requires_grad=i not in op.constant, dtype=np.float64) for i, a in enumerate(arrays)]
    out = op.fn(*tensors)
    assert out.dtype == np.float64
    out.backward(weights)
    for i, t in enumerate(tensors):
        if i in op.constant:
            continue
        expected = numerical_grad(scalar_loss, arrays, i)
        assert t.grad is not None, f"{op.name}: input {i} got no gradient"
        assert t.grad.shape == t.shape
        np.testing.assert_allclose(t.grad, expected, rtol=1e-5, atol=1e-7, err_msg=f"{op.name}: input {i}")


@pytest.mark.parametrize("op", [op for op in OPS if op.name in {"linear-bias", "conv2d", "max_pool2d", "softmax",
                                                                 "cross_entropy", "batch_norm-training"}],
                         ids=lambda op: op.name)
def test_float32_forward_and_backward_keep_float32(op):
    rng = np.random.default_rng(0)
    make = op.make or (lambda r, s: r.standard_normal(s))
    tensors = [zg.tensor(make(rng, s), requires_grad=True) for s in op.shapes]
    out = op.fn(*tensors)
    assert out.dtype == np.float32
    out.backward(np.ones(out.shape, np.float32))
    assert all(t.grad.dtype == np.float32 for t in tensors)
