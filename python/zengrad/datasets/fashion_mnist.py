"""Fashion-MNIST (Zalando): ``load_data(path=None)`` as ``keras.datasets.fashion_mnist``, and
``load_embedded()``, a small real subset shipped inside the package.

Labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt,
7 Sneaker, 8 Bag, 9 Ankle boot (``CLASS_NAMES``).

Search order and errors: see ``zengrad.datasets``. On Debian/Ubuntu,
``apt-get install dataset-fashion-mnist`` puts the full set in /usr/share/datasets/fashion-mnist/.
Downloads come from Zalando Research's S3 bucket, then its GitHub repository; the SHA-256
values are those of the published .gz files (their MD5s match the ones in Zalando's README;
the SHA-256s are the ones TensorFlow Datasets lists in ``url_checksums/fashion_mnist.txt``).
Fashion-MNIST is (c) 2017 Zalando SE, MIT licence (see ``LICENSE-fashion-mnist.txt``).
"""
from __future__ import annotations

import os

import numpy as np

from . import _fetch, _idx

NAME = "fashion-mnist"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
EMBEDDED_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             "fashion_mnist_subset.npz")


def _dataset() -> _fetch.Dataset:
    # Built per call so that MIRRORS / SHA256 / _fetch.SYSTEM_DIR can be changed at run time.
    return _fetch.Dataset(
        name=NAME, title="Fashion-MNIST", files=_idx.MNIST_FILES,
        mirrors=tuple(MIRRORS), sha256=dict(SHA256),
        how_to_get=("on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist "
                    f"(installs it in {_fetch.system_dir(NAME)}/)",),
        note=("With no data at all, zengrad.datasets.fashion_mnist.load_embedded() gives a "
              "6,000 + 1,000 image subset that ships with zengrad."))


def load_data(path=None):
    """Fashion-MNIST: ``((x_train, y_train), (x_test, y_test))``.

    x: uint8 (N, 28, 28), y: uint8 (N,) in 0..9; N = 60000 train, 10000 test.
    path: a folder holding the four IDX files (gzipped or not); None searches
    ``$ZENGRAD_DATA/fashion-mnist/`` (else ``~/.cache/zengrad/fashion-mnist/``), then
    ``/usr/share/datasets/fashion-mnist/``, then downloads into the cache folder.
    Raises DatasetNotFoundError / ChecksumMismatchError (OSError) when the data cannot be
    had, ValueError naming the file when a file is not valid MNIST-format IDX.
    """
    return _idx.load_mnist_format(_fetch.locate(_dataset(), path))


def load_embedded():
    """A real subset of Fashion-MNIST that ships inside zengrad (no disk search, no network).

    ``((x_train, y_train), (x_test, y_test))`` as ``load_data``, with 6000 training images
    (the first 600 of each class in the official training file, in file order) and 1000 test
    images (the first 100 of each class in the official test file). Regenerate the file with
    ``tools/make_embedded_subset.py``.
    """
    with np.load(EMBEDDED_FILE, allow_pickle=False) as z:
        return (z["x_train"], z["y_train"]), (z["x_test"], z["y_test"])


def embedded_indices():
    """The positions in the official train and test files of the ``load_embedded`` images."""
    with np.load(EMBEDDED_FILE, allow_pickle=False) as z:
        return z["train_index"].astype(np.int64), z["test_index"].astype(np.int64)
