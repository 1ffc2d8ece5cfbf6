"""A ReLU convolution followed by max pooling runs as one op (F.conv2d_relu_max_pool2d), which a
Sequential uses for Conv2D(activation="relu") before MaxPooling2D. It must give the bits of the
two ops run apart: values, gradients, and whole training runs."""
import numpy as np
import pytest

import zengrad as zg
from zengrad import functional as F

GEOMETRIES = [
    dict(),
    dict(padding="same", pool_size=3, pool_stride=2, pool_padding="same"),      # overlapping windows
    dict(stride=2, pool_size=(2, 3), pool_stride=1),
    dict(padding=((1, 0), (2, 1)), dilation=2, pool_size=2, pool_stride=(1, 2), pool_padding="same"),
]


def bits(a):
    """The array's bits: equal bits, not equal values (+0 and -0 differ, NaN equals NaN)."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def unfused(x, w, b, stride=1, padding="valid", dilation=1, pool_size=2, pool_stride=None, pool_padding="valid"):
    y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, activation="relu")
    return F.max_pool2d(y, pool_size, stride=pool_stride, padding=pool_padding)


@pytest.mark.parametrize("kw", GEOMETRIES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_same_bits_as_the_two_ops(backend, rng, kw, dtype):
    x = rng.standard_normal((3, 9, 10, 4)).astype(dtype)
    x[0, :3] = 0                             # whole windows of zeros: ReLU ties, maxima of +0
    x[1, 2, 3, 1] = np.nan                   # a NaN pixel wins its windows
    w = rng.standard_normal((3, 3, 4, 16)).astype(dtype)
    b = rng.standard_normal(16).astype(dtype) - 0.5     # many pre-activations below 0
    results = []
    for op in (F.conv2d_relu_max_pool2d, unfused):
        tensors = [zg.tensor(a, requires_grad=True, dtype=dtype) for a in (x, w, b)]
        out = op(*tensors, **kw)
        g = np.random.default_rng(7).standard_normal(out.shape).astype(dtype)
        out.backward(g)
        results.append([out.data] + [t.grad for t in tensors])
    for fused, apart in zip(*results):
        np.testing.assert_array_equal(bits(fused), bits(apart))


def test_without_gradients_it_returns_the_pooled_values(rng):
    x, w = rng.standard_normal((2, 6, 6, 3)), rng.standard_normal((3, 3, 3, 8))
    with zg.no_grad():
        out = F.conv2d_relu_max_pool2d(zg.tensor(x, requires_grad=True), zg.tensor(w, requires_grad=True))
    assert not out.requires_grad
    np.testing.assert_array_equal(out.data, unfused(zg.tensor(x), zg.tensor(w), None).data)


def seed_like_cnn():
    return zg.Sequential([
        zg.layers.Conv2D(8, 3, activation="relu", input_shape=(12, 12, 1)),
        zg.layers.MaxPooling2D(),
        zg.layers.Conv2D(16, 3, activation="relu"),
        zg.layers.MaxPooling2D(),
        zg.layers.Flatten(),
        zg.layers.Dense(10, activation="softmax"),
    ])


def test_sequential_trains_to_the_bits_of_its_layers_run_one_by_one():
    rng = np.random.default_rng(3)
    x = rng.random((16, 12, 12, 1), np.float32)
    y = rng.integers(0, 10, 16)
    runs = []
    for fused in (True, False):
        zg.manual_seed(5)
        model = seed_like_cnn()
        opt = zg.optimizers.Adam(learning_rate=1e-2)
        losses = []
        for _ in range(5):
            if fused:
                logits = model._forward(zg.tensor(x), training=True, logits=True)
            else:
                h = zg.tensor(x)
                for layer in model.layers[:-1]:
                    h = layer(h, training=True)
                logits = model.layers[-1].call_pre_activation(h, training=True)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            opt.step(model.parameters())
            opt.zero_grad(model.parameters())
            losses.append(loss.data)
        runs.append((losses, [p.data.copy() for p in model.parameters()]))
    (losses_fused, weights_fused), (losses_apart, weights_apart) = runs
    np.testing.assert_array_equal(bits(np.array(losses_fused)), bits(np.array(losses_apart)))
    for a, b in zip(weights_fused, weights_apart):
        np.testing.assert_array_equal(bits(a), bits(b))


def test_sequential_fuses_only_a_relu_convolution_before_max_pooling(monkeypatch):
    calls = []
    real = F.conv2d_relu_max_pool2d
    monkeypatch.setattr(F, "conv2d_relu_max_pool2d", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = np.random.default_rng(0).random((2, 12, 12, 1), np.float32)
    seed_like_cnn().predict(x)
    assert len(calls) == 2
    calls.clear()
    zg.Sequential([zg.layers.Conv2D(4, 3, input_shape=(12, 12, 1)), zg.layers.MaxPooling2D(),        # no ReLU
                   zg.layers.Conv2D(4, 3, padding="same", activation="relu"), zg.layers.AveragePooling2D(),  # not max
                   zg.layers.Conv2D(4, 1, activation="relu"), zg.layers.MaxPooling2D()]).predict(x)  # pool last
    assert calls == []



def test_a_fused_pair_checks_the_shapes_of_each_call():
    """The pooling layer's check sees the convolution's output for this input, not the build's."""
    model = zg.Sequential([zg.layers.Conv2D(4, 3, activation="relu"), zg.layers.MaxPooling2D(),
                           zg.layers.Conv2D(2, 1)])            # any image size
    assert model(np.zeros((1, 12, 12, 1), np.float32)).shape == (1, 5, 5, 2)
    assert model(np.zeros((1, 20, 16, 1), np.float32)).shape == (1, 9, 7, 2)
    with pytest.raises(ValueError, match=r"'max_pooling2d\w*' \(MaxPooling2D\): input of shape \(1, 1, 1, 4\)"):
        model(np.zeros((1, 3, 3, 1), np.float32))


# ---- a ReLU dense layer: F.linear(..., activation="relu"), the ReLU in the GEMM's epilogue ----

@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("shape", [(32, 1600, 128), (5, 7, 3), (1, 1, 1), (33, 65, 17)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_relu_same_bits_as_the_two_ops(backend, rng, shape, with_bias, dtype):
    n, k, units = shape
    x = rng.standard_normal((n, k)).astype(dtype)
    x[0] = 0                                 # a row of exact zeros: +0 pre-activations (no bias)
    x[-1, 0] = np.nan if n > 2 else x[-1, 0]   # a row of NaNs, kept by the ReLU
    w = rng.standard_normal((k, units)).astype(dtype)
    b = rng.standard_normal(units).astype(dtype) - 0.5 if with_bias else None
    results = []
    for op in (lambda *t: F.linear(*t, activation="relu"), lambda *t: F.relu(F.linear(*t))):
        tensors = [zg.tensor(a, requires_grad=True, dtype=dtype) for a in (x, w, b) if a is not None]
        out = op(*tensors)
        out.backward(np.random.default_rng(7).standard_normal(out.shape).astype(dtype))
        results.append([out.data] + [t.grad for t in tensors])
    for fused, apart in zip(*results):
        np.testing.assert_array_equal(bits(fused), bits(apart))


def test_a_relu_dense_layer_runs_one_gemm_and_no_relu_kernel(monkeypatch, rng):
    called = []
    for name in ("gemm", "relu"):
        real = getattr(zg.kernels, name)
        monkeypatch.setattr(zg.kernels, name, lambda *a, _real=real, _name=name, **k: called.append(_name) or
                            _real(*a, **k))
    layer = zg.layers.Dense(6, activation="relu")
    out = layer(rng.standard_normal((4, 5)).astype(np.float32))
    assert called == ["gemm"] and (out.data >= 0).all()
