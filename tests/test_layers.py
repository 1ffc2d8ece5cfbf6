"""Layers: gradients against central finite differences (float64), shapes, initialisers,
BatchNormalization and Dropout modes, and the errors a user sees for bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

import zengrad as zg

L = zg.layers


# ---- gradient checks ----

def _numeric_grad(f, array, eps=1e-6):
    """Central differences of the scalar f() with respect to `array`, perturbed in place."""
    grad = np.zeros_like(array)
    it = np.nditer(array, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = array[i]
        array[i] = old + eps
        up = f()
        array[i] = old - eps
        down = f()
        array[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def gradcheck(layer, x, training=False, seed=None, rtol=1e-5, atol=1e-7):
    """Compare the autograd gradients of sum(layer(x) * R) for x and every parameter with
    finite differences. With `seed`, the generator is reseeded before each forward pass so
    that dropout draws the same mask every time."""
    x = zg.tensor(x, requires_grad=True, dtype="float64")

    def forward(t):
        if seed is not None:
            zg.manual_seed(seed)
        return layer(t, training=training)

    out = forward(x)
    weights = np.random.default_rng(1).standard_normal(out.shape)
    loss = (out * weights).sum()
    loss.backward()
    f = lambda: float((forward(zg.tensor(x.data, dtype="float64")).data * weights).sum())  # noqa: E731
    checked = [("input", x)] + [(f"parameter {i}", p) for i, p in enumerate(layer.parameters())]
    for what, t in checked:
        assert t.grad is not None, what
        expected = _numeric_grad(f, t.data)
        np.testing.assert_allclose(t.grad, expected, rtol=rtol, atol=atol, err_msg=f"{layer.name}: {what}")
    return out


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "tanh", "softmax", "linear"])
def test_dense_gradients(rng, activation):
    layer = L.Dense(4, activation=activation, dtype="float64")
    gradcheck(layer, rng.standard_normal((3, 5)))
    assert [p.shape for p in layer.parameters()] == [(5, 4), (4,)]


def test_dense_on_3d_input_and_without_bias(rng):
    layer = L.Dense(3, use_bias=False, dtype="float64")
    out = gradcheck(layer, rng.standard_normal((2, 4, 5)))
    assert out.shape == (2, 4, 3) and layer.compute_output_shape((None, 4, 5)) == (None, 4, 3)
    assert len(layer.parameters()) == 1


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3),
    dict(kernel_size=(2, 3), padding="same", activation="relu"),
    dict(kernel_size=3, strides=2, padding="same"),
    dict(kernel_size=(3, 2), strides=(2, 1)),
    dict(kernel_size=2, dilation_rate=2, activation="tanh"),
    dict(kernel_size=3, use_bias=False, padding="same"),
])
def test_conv2d_gradients_and_shapes(rng, kwargs):
    layer = L.Conv2D(3, dtype="float64", **kwargs)
    out = gradcheck(layer, rng.standard_normal((2, 6, 5, 2)))
    assert out.shape[1:] == layer.compute_output_shape((None, 6, 5, 2))[1:]
    assert layer.output_shape == (None,) + out.shape[1:]


@pytest.mark.parametrize("cls", [L.MaxPooling2D, L.AveragePooling2D])
@pytest.mark.parametrize("kwargs", [dict(), dict(pool_size=3, strides=2, padding="same"),
                                    dict(pool_size=(2, 3), strides=1)])
def test_pooling_gradients_and_shapes(rng, cls, kwargs):
    layer = cls(**kwargs)
    out = gradcheck(layer, rng.standard_normal((2, 7, 6, 3)))
    assert out.shape[1:] == layer.compute_output_shape((None, 7, 6, 3))[1:]
    assert layer.parameters() == []


def test_flatten_and_activation_gradients(rng):
    out = gradcheck(L.Flatten(), rng.standard_normal((2, 3, 4, 2)))
    assert out.shape == (2, 24)
    for name in ["relu", "sigmoid", "tanh", "softmax", "linear"]:
        gradcheck(L.Activation(name), rng.standard_normal((3, 4)))


def test_dropout_gradients_with_a_fixed_mask(rng):
    layer = L.Dropout(0.4)
    gradcheck(layer, rng.standard_normal((4, 6)), training=True, seed=7)


@pytest.mark.parametrize("training", [True, False])
def test_batch_normalization_gradients(rng, training):
    layer = L.BatchNormalization(dtype="float64")
    x = rng.standard_normal((5, 3, 2, 4)) * 2 + 1
    layer(x)  # build, then give gamma/beta and the moving statistics non-trivial values
    layer.gamma.data[...] = rng.uniform(0.5, 1.5, 4)
    layer.beta.data[...] = rng.standard_normal(4)
    layer.moving_mean.data[...] = rng.standard_normal(4)
    layer.moving_variance.data[...] = rng.uniform(0.5, 2, 4)
    gradcheck(layer, x, training=training, rtol=1e-4, atol=1e-6)


# ---- building, weights, initialisers ----

def test_glorot_uniform_kernels_zero_biases_float32():
    zg.manual_seed(0)
    dense, conv = L.Dense(300), L.Conv2D(40, (3, 5))
    dense(np.zeros((1, 200)))
    conv(np.zeros((1, 8, 8, 20)))
    for layer, fan_in, fan_out in [(dense, 200, 300), (conv, 3 * 5 * 20, 3 * 5 * 40)]:
        limit = np.sqrt(6 / (fan_in + fan_out))
        k = layer.kernel.data
        assert k.dtype == np.float32 and layer.bias.data.dtype == np.float32
        assert np.abs(k).max() <= limit and np.abs(k).max() > 0.95 * limit
        assert abs(k.std() - limit / np.sqrt(3)) < 0.05 * limit  # the std of U(-l, l)
        assert not layer.bias.data.any()
        assert layer.kernel.requires_grad and layer.bias.requires_grad
    assert conv.kernel.shape == (3, 5, 20, 40)


def test_initialisation_follows_manual_seed():
    def kernel(seed):
        zg.manual_seed(seed)
        layer = L.Dense(5, input_shape=(4,))
        layer(np.zeros((1, 4), np.float32))
        return layer.kernel.data.copy()
    np.testing.assert_array_equal(kernel(3), kernel(3))
    assert not np.array_equal(kernel(3), kernel(4))


def test_lazy_build_and_weight_lists():
    layer = L.Dense(2)
    assert not layer.built and layer.parameters() == [] and layer.count_params() == 0
    y = layer(np.ones((3, 4), np.float32))
    assert isinstance(y, zg.Tensor) and y.dtype == np.float32 and y.shape == (3, 2)
    assert layer.built and layer.input_shape == (None, 4) and layer.output_shape == (None, 2)
    assert layer.parameters() == layer.trainable_weights == layer.weights == [layer.kernel, layer.bias]
    assert layer.count_params() == 10
    layer.trainable = False
    assert layer.parameters() == [] and layer.non_trainable_weights == [layer.kernel, layer.bias]


def test_layer_names_are_unique_and_snake_case():
    a, b = L.MaxPooling2D(), L.MaxPooling2D()
    assert a.name.startswith("max_pooling2d") and a.name != b.name
    assert L.BatchNormalization(name="bn").name == "bn"


def test_integer_inputs_are_cast_to_the_layer_dtype():
    y = L.Dense(2)(np.ones((1, 3), np.uint8))
    assert y.dtype == np.float32


# ---- BatchNormalization and Dropout modes ----

def test_batch_normalization_training_inference_and_moving_statistics(rng):
    layer = L.BatchNormalization(momentum=0.9, epsilon=1e-3)
    x = (rng.standard_normal((64, 3)) * [1.0, 2.0, 3.0] + [5.0, -1.0, 0.5]).astype(np.float32)
    y = layer(x, training=True).data
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=0), x.var(axis=0) / (x.var(axis=0) + 1e-3), rtol=1e-4)
    np.testing.assert_allclose(layer.moving_mean.data, 0.1 * x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.data, 0.9 + 0.1 * x.var(axis=0), rtol=1e-5)
    # inference: the moving statistics, which it leaves alone
    before = [layer.moving_mean.data.copy(), layer.moving_variance.data.copy()]
    y = layer(x, training=False).data
    expected = (x - before[0]) / np.sqrt(before[1] + 1e-3)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(layer.moving_mean.data, before[0])
    np.testing.assert_array_equal(layer.moving_variance.data, before[1])
    # gamma/beta train; the moving statistics are weights but not parameters
    assert layer.parameters() == [layer.gamma, layer.beta]
    assert layer.non_trainable_weights == [layer.moving_mean, layer.moving_variance]
    assert layer.count_params() == 12
    # a frozen layer runs in inference mode even when training
    layer.trainable = False
    np.testing.assert_allclose(layer(x, training=True).data, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(layer.moving_mean.data, before[0])


def test_dropout_modes(rng):
    layer = L.Dropout(0.5)
    x = np.ones((200, 50), np.float32)
    np.testing.assert_array_equal(layer(x).data, x)
    zg.manual_seed(0)
    y = layer(x, training=True).data
    assert set(np.unique(y)) <= {0.0, 2.0}
    assert 0.45 < (y == 0).mean() < 0.55
    zg.manual_seed(0)
    np.testing.assert_array_equal(layer(x, training=True).data, y)


# ---- errors ----

def test_conv2d_refuses_a_3d_input_naming_the_layer():
    layer = L.Conv2D(4, 3, name="my_conv")
    with pytest.raises(ValueError, match=r"my_conv.*Conv2D.*\(2, 28, 28\).*ndim=4"):
        layer(np.zeros((2, 28, 28), np.float32))


def test_dense_refuses_a_different_feature_count_after_build():
    layer = L.Dense(3, name="fc")
    layer(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"fc.*\(2, 6\).*built for 5"):
        layer(np.zeros((2, 6), np.float32))


def test_too_small_input_for_a_valid_kernel():
    with pytest.raises(ValueError, match="does not fit"):
        L.Conv2D(2, 5)(np.zeros((1, 4, 4, 1), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        L.MaxPooling2D(3)(np.zeros((1, 2, 2, 1), np.float32))


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"'swishy'.*relu.*sigmoid.*softmax.*tanh"):
        L.Dense(3, activation="swishy")
    with pytest.raises(ValueError, match="known"):
        L.Activation("nope")


@pytest.mark.parametrize("make, exc, match", [
    (lambda: L.Dense(0), ValueError, "units"),
    (lambda: L.Dense(3, dtype="int32"), TypeError, "dtype"),
    (lambda: L.Dense(3, input_shape=(0,)), ValueError, "input_shape"),
    (lambda: L.Conv2D(4, 3, padding="full"), ValueError, "padding"),
    (lambda: L.Conv2D(4, (3, 3, 3)), ValueError, "kernel_size"),
    (lambda: L.Conv2D(4, 3, data_format="channels_first"), ValueError, "channels_last"),
    (lambda: L.MaxPooling2D(pool_size=0), ValueError, "pool_size"),
    (lambda: L.Dropout(1.0), ValueError, "rate"),
    (lambda: L.BatchNormalization(axis=1), ValueError, "axis"),
    (lambda: L.Dense(3, kernel_initializer="magic"), ValueError, "initializer"),
    (lambda: L.Dense(3, bogus=1), TypeError, "bogus"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        layer = make()
        layer(np.zeros((1, 4), np.float32))
