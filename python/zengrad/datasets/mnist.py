"""MNIST handwritten digits: ``load_data(path=None)``, as ``keras.datasets.mnist``.

Search order and errors: see ``zengrad.datasets``. Downloads come from the mirrors the
PyTorch and TensorFlow projects use (Yann LeCun's site is often unreachable); the files are
the original ones, and their SHA-256 values are those published in TensorFlow Datasets'
checksums (``url_checksums/mnist.txt``), which also match the PyTorch mirror.
"""
from __future__ import annotations

from . import _fetch, _idx

NAME = "mnist"
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",      # PyTorch (torchvision)
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow (CVDF)
)
SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


def _dataset() -> _fetch.Dataset:
    # Built per call so that MIRRORS / SHA256 / _fetch.SYSTEM_DIR can be changed at run time.
    return _fetch.Dataset(name=NAME, title="MNIST", files=_idx.MNIST_FILES,
                          mirrors=tuple(MIRRORS), sha256=dict(SHA256))


def load_data(path=None):
    """The MNIST digits: ``((x_train, y_train), (x_test, y_test))``.

    x: uint8 (N, 28, 28), y: uint8 (N,) in 0..9; N = 60000 train, 10000 test.
    path: a folder holding the four IDX files (gzipped or not); None searches
    ``$ZENGRAD_DATA/mnist/`` (else ``~/.cache/zengrad/mnist/``), then
    ``/usr/share/datasets/mnist/``, then downloads into the cache folder.
    Raises DatasetNotFoundError / ChecksumMismatchError (OSError) when the data cannot be
    had, ValueError naming the file when a file is not valid MNIST IDX.
    """
    return _idx.load_mnist_format(_fetch.locate(_dataset(), path))
