"""The seed CNN: the Keras example that started zengrad, written against zengrad.

Conv2D(32) -> MaxPool -> Conv2D(64) -> MaxPool -> Flatten -> Dense(128) -> Dense(10, softmax),
trained with Adam for 5 epochs at batch 32, then evaluated. The original's output layer
(Dense(1, sigmoid) with binary cross-entropy on ten classes) is fixed to a 10-way softmax.

    python examples/seed_cnn.py [mnist|fashion_mnist] [cpu|cuda]

`python -m zengrad demo` runs the same model (on the embedded subset by default).
"""
import sys

import zengrad as zg

model = zg.Sequential([
    zg.layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
    zg.layers.MaxPooling2D((2, 2)),
    zg.layers.Conv2D(64, (3, 3), activation="relu"),
    zg.layers.MaxPooling2D((2, 2)),
    zg.layers.Flatten(),
    zg.layers.Dense(128, activation="relu"),
    zg.layers.Dense(10, activation="softmax"),
])

model.to(sys.argv[2] if len(sys.argv) > 2 else "cpu")   # "cuda": the weights, and each batch, on the GPU
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

dataset = getattr(zg.datasets, sys.argv[1] if len(sys.argv) > 1 else "fashion_mnist")
(x_train, y_train), (x_test, y_test) = dataset.load_data()
x_train = x_train.reshape(-1, 28, 28, 1) / 255.0
x_test = x_test.reshape(-1, 28, 28, 1) / 255.0

model.fit(x_train, y_train, epochs=5, batch_size=32, validation_data=(x_test, y_test))
model.evaluate(x_test, y_test)
