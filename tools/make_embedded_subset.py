#!/usr/bin/env python3
"""Regenerate python/zengrad/datasets/fashion_mnist_subset.npz from the full Fashion-MNIST.

The subset: the first 600 images of each class in the official training file and the first
100 of each class in the official test file, each kept in file order (so 6000 + 1000
images, no randomness), with their positions in the official files (train_index,
test_index). The source files are checked against the SHA-256 of their decompressed
contents before use, so the output depends only on the official data.

The .npz is written byte-for-byte reproducibly (fixed zip timestamps, fixed compression
level) to a temporary file, then renamed.

    python tools/make_embedded_subset.py                 # from /usr/share/datasets/fashion-mnist
    python tools/make_embedded_subset.py --src DIR       # a folder with the four IDX files
    python tools/make_embedded_subset.py --check         # exit 1 if the shipped file differs

The source: `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or the files from
https://github.com/zalandoresearch/fashion-mnist (data/fashion/).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import sys
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

from zengrad.datasets import _fetch, _idx  # noqa: E402

OUT = os.path.join(ROOT, "python", "zengrad", "datasets", "fashion_mnist_subset.npz")
PER_CLASS = {"train": 600, "t10k": 100}
# SHA-256 of the decompressed official files (the .gz bytes vary with the compressor; Debian's
# differ from Zalando's, the contents do not).
RAW_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


def _raw_sha256(path: str) -> str:
    with open(path, "rb") as f:
        opener = gzip.open if f.read(2) == b"\x1f\x8b" else open
    h = hashlib.sha256()
    with opener(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def first_per_class(y: np.ndarray, per_class: int) -> np.ndarray:
    """Positions of the first ``per_class`` items of each class, in file order."""
    keep = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        keep[np.flatnonzero(y == c)[:per_class]] = True
    return np.flatnonzero(keep)


def build(src: str) -> bytes:
    found, missing = _fetch.find_in(src, _idx.MNIST_FILES)
    if missing:
        sys.exit(f"{src}: missing {', '.join(missing)} (.gz or not)")
    for base, path in found.items():
        got = _raw_sha256(path)
        if got != RAW_SHA256[base]:
            sys.exit(f"{path}: contents have SHA-256 {got}, expected {RAW_SHA256[base]} "
                     "(not the official Fashion-MNIST)")
    (x_tr, y_tr), (x_te, y_te) = _idx.load_mnist_format(found)
    i_tr = first_per_class(y_tr, PER_CLASS["train"])
    i_te = first_per_class(y_te, PER_CLASS["t10k"])
    arrays = {
        "x_train": x_tr[i_tr], "y_train": y_tr[i_tr],
        "x_test": x_te[i_te], "y_test": y_te[i_te],
        "train_index": i_tr.astype(np.uint16), "test_index": i_te.astype(np.uint16),
    }
    buf = io.BytesIO()
    # np.savez_compressed stamps the current time into the zip; this is the same layout
    # (one .npy per array, deflated), with a fixed timestamp, so np.load reads it as usual.
    with zipfile.ZipFile(buf, "w") as z:
        for key, a in arrays.items():
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.ascontiguousarray(a), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, npy.getvalue(), compresslevel=9)
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=os.path.join(_fetch.SYSTEM_DIR, "fashion-mnist"),
                    help="folder with the four Fashion-MNIST IDX files (default: %(default)s)")
    ap.add_argument("--out", default=OUT, help="output .npz (default: the packaged file)")
    ap.add_argument("--check", action="store_true",
                    help="do not write; exit 1 if --out differs from what would be written")
    args = ap.parse_args(argv)
    data = build(args.src)
    if args.check:
        try:
            with open(args.out, "rb") as f:
                same = f.read() == data
        except FileNotFoundError:
            same = False
        print(f"{args.out}: {'up to date' if same else 'DIFFERS'}")
        return 0 if same else 1
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
