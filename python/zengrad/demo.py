"""`python -m zengrad demo`: the seed CNN (examples/seed_cnn.py) trained and evaluated.

By default on the Fashion-MNIST subset that ships inside the package (6,000 training and
1,000 test images), for one epoch, so that it runs anywhere, offline, in well under a minute.
`--device cuda` trains on the GPU (the model moved there with model.to("cuda")).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import zengrad as zg

DATASETS = ("embedded", "fashion_mnist", "mnist")


def seed_cnn() -> "zg.Sequential":
    """The seed CNN of examples/seed_cnn.py: input (N, 28, 28, 1), output 10-way softmax."""
    return zg.Sequential([
        zg.layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        zg.layers.MaxPooling2D((2, 2)),
        zg.layers.Conv2D(64, (3, 3), activation="relu"),
        zg.layers.MaxPooling2D((2, 2)),
        zg.layers.Flatten(),
        zg.layers.Dense(128, activation="relu"),
        zg.layers.Dense(10, activation="softmax"),
    ])


def load(dataset: str):
    """((x_train, y_train), (x_test, y_test)) as float32 images in [0, 1], (N, 28, 28, 1)."""
    if dataset == "embedded":
        (x_train, y_train), (x_test, y_test) = zg.datasets.fashion_mnist.load_embedded()
    else:
        (x_train, y_train), (x_test, y_test) = getattr(zg.datasets, dataset).load_data()
    scale = np.float32(1 / 255)
    return ((x_train.reshape(-1, 28, 28, 1) * scale, y_train),
            (x_test.reshape(-1, 28, 28, 1) * scale, y_test))


class _EpochTimer(zg.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=DATASETS, default="embedded",
                        help="embedded: the Fashion-MNIST subset inside the package (default)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu",
                        help="where to train: cpu (default), cuda (the current GPU) or cuda:N")
    parser.add_argument("--backend", choices=zg.kernels.available_backends(), default=None,
                        help="CPU kernel backend (default: the automatic choice)")
    parser.add_argument("--threads", type=int, default=None, help="kernel threads (default: all usable cores)")
    parser.add_argument("--seed", type=int, default=0, help="seed for initialisation and shuffling")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)


def run(args: argparse.Namespace) -> int:
    if args.epochs < 1 or args.batch_size < 1:
        raise SystemExit("demo: --epochs and --batch-size must be at least 1")
    try:
        device = zg._device.resolve("demo", args.device)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise SystemExit(f"demo: --device {args.device}: {str(exc).split(': ', 1)[-1]}") from None
    if args.threads is not None:
        zg.set_num_threads(args.threads)
    if args.backend is not None:
        zg.kernels.set_backend(args.backend)
    zg.manual_seed(args.seed)
    (x_train, y_train), (x_test, y_test) = load(args.dataset)
    info = zg.info()
    where = (f"backend {info['backend']}, SIMD {info['simd']}, {info['num_threads']} threads" if device == "cpu"
             else f"device {device} ({zg._device.describe()['cuda'][int(device[5:])].split(' ', 1)[1]})")
    print(f"zengrad {info['version']}: {where}; {args.dataset}: {len(x_train)} training, {len(x_test)} test images")

    model = seed_cnn().to(device)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if args.verbose:
        model.summary()
    timer = _EpochTimer()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
              validation_data=(x_test, y_test), verbose=args.verbose, callbacks=[timer])
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=args.batch_size, verbose=0)
    steps = -(-len(x_train) // args.batch_size)
    per_epoch = float(np.median(timer.seconds))
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f}; "
          f"{per_epoch:.2f} s per epoch (median of {len(timer.seconds)}), {1000 * per_epoch / steps:.1f} ms per step")
    return 0
