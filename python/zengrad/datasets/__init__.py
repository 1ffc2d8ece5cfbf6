"""Datasets, loaded as Keras loads them: ``((x_train, y_train), (x_test, y_test))``.

- ``mnist.load_data(path=None)``, ``fashion_mnist.load_data(path=None)``: uint8 images
  (N, 28, 28) and uint8 labels (N,), read from the IDX files (gzipped or not).
- ``fashion_mnist.load_embedded()`` (also ``datasets.load_embedded``): 6000 + 1000 real
  Fashion-MNIST images shipped inside the package, for running without data or network.

``load_data`` looks, in order: the folder ``path`` (if given, only there); the cache folder
``$ZENGRAD_DATA/<name>/`` (else ``~/.cache/zengrad/<name>/``); the system folder
``/usr/share/datasets/<name>/`` (Debian's ``dataset-fashion-mnist`` package installs
Fashion-MNIST there); then it downloads from the official mirrors into the cache folder,
checking the SHA-256 of every file. ``<name>`` is ``mnist`` or ``fashion-mnist``.

Errors: ``DatasetNotFoundError`` (a FileNotFoundError, so an OSError) when the data is
nowhere and cannot be downloaded, its message listing where it looked and how to get the
data; ``ChecksumMismatchError`` (an OSError) when downloads arrived corrupt (the bad files
are deleted); ValueError naming the file when a file is not valid IDX.
"""
from . import fashion_mnist, mnist
from ._fetch import ChecksumMismatchError, DatasetError, DatasetNotFoundError
from ._idx import read_idx, write_idx
from .fashion_mnist import load_embedded

__all__ = ["mnist", "fashion_mnist", "load_embedded", "read_idx", "write_idx",
           "DatasetError", "DatasetNotFoundError", "ChecksumMismatchError"]
