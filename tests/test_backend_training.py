"""The training stack runs unchanged on every backend, to the same numbers."""
import numpy as np
import pytest

import zengrad as zg


def tiny_training(backend: str) -> list[float]:
    """Three epochs of a small CNN (conv, pools, dense, dropout-free) on 128 images."""
    with zg.kernels.use_backend(backend):
        zg.manual_seed(3)
        (images, labels), _ = zg.datasets.fashion_mnist.load_embedded()
        x = images[:128].reshape(-1, 28, 28, 1) / np.float32(255)
        model = zg.Sequential([
            zg.layers.Conv2D(6, 3, activation="relu", input_shape=(28, 28, 1)),
            zg.layers.MaxPooling2D(),
            zg.layers.Conv2D(8, 3, padding="same", activation="relu"),
            zg.layers.AveragePooling2D(),
            zg.layers.Flatten(),
            zg.layers.Dense(16, activation="relu"),
            zg.layers.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model.fit(x, labels[:128], epochs=3, batch_size=32, verbose=0).history["loss"]


@pytest.fixture(scope="module")
def numpy_losses():
    return tiny_training("numpy")


def test_same_training_on_every_backend(backend, numpy_losses):
    losses = tiny_training(backend)
    assert losses[-1] < losses[0]
    # float32 kernels that sum in different orders: equal to float32 rounding, amplified a
    # little by three epochs of training
    np.testing.assert_allclose(losses, numpy_losses, rtol=2e-4)
