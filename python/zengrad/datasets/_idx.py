"""Reading and writing IDX files (the MNIST format), gzipped or not.

An IDX file is: two zero bytes, a type code, the number of dimensions ``ndim``, ``ndim``
big-endian uint32 sizes, then the values in C order, big-endian. The first four bytes read
as a big-endian int are the "magic number": 0x00000801 for MNIST labels (uint8, 1-d) and
0x00000803 for MNIST images (uint8, 3-d).

Everything that is wrong with a file raises ValueError naming the file.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

# type code -> big-endian dtype
_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("=") if dt.itemsize > 1 else dt: code for code, dt in _DTYPES.items()}

MAGIC_LABELS = 0x00000801
MAGIC_IMAGES = 0x00000803

_GZIP_MAGIC = b"\x1f\x8b"
# No real IDX file is near this; a larger value means a corrupt header, not a big file.
_MAX_VALUES = 1 << 34


def _open(path: str):
    """The file as a binary stream, decompressed when it is gzip (by content, not name)."""
    f = open(path, "rb")
    try:
        if f.read(2) == _GZIP_MAGIC:
            f.seek(0)
            return gzip.GzipFile(fileobj=f, mode="rb"), f
        f.seek(0)
        return f, f
    except BaseException:
        f.close()
        raise


def _read_exact(stream, buf: memoryview) -> int:
    n = 0
    while n < len(buf):
        got = stream.readinto(buf[n:])
        if not got:
            break
        n += got
    return n


def read_idx(path, magic: int | None = None, shape: tuple | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzip) into a writable, native-endian array.

    magic: the expected magic number (e.g. MAGIC_IMAGES), or None for any valid one.
    shape: the expected shape, with None for "any size" (e.g. ``(None, 28, 28)``), or None.
    Raises ValueError naming the file if the header is invalid, does not match ``magic`` /
    ``shape``, or the payload is shorter or longer than the header says; OSError if the
    file cannot be opened.
    """
    path = os.fspath(path)
    stream, raw = _open(path)
    try:
        try:
            return _read(stream, path, magic, shape)
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise ValueError(f"{path}: not a valid IDX file: broken gzip stream ({e})") from None
    finally:
        stream.close()
        raw.close()


def _read(stream, path, magic, shape) -> np.ndarray:
    head = stream.read(4)
    if len(head) < 4:
        raise ValueError(f"{path}: not a valid IDX file: {len(head)} bytes, "
                         "expected at least a 4-byte header")
    got_magic = struct.unpack(">I", head)[0]
    zero, code, ndim = struct.unpack(">HBB", head)
    if zero != 0 or code not in _DTYPES or ndim == 0:
        raise ValueError(f"{path}: not a valid IDX file: magic number 0x{got_magic:08x} "
                         "(expected 0x0000TTDD with a known type TT and DD >= 1 dimensions)")
    if magic is not None and got_magic != magic:
        raise ValueError(f"{path}: IDX magic number is 0x{got_magic:08x}, expected 0x{magic:08x}")
    dims_raw = stream.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise ValueError(f"{path}: IDX header is truncated: {ndim} dimensions announced, "
                         f"{len(dims_raw) // 4} present")
    dims = struct.unpack(f">{ndim}I", dims_raw)
    if shape is not None:
        ok = len(dims) == len(shape) and all(s is None or s == d for s, d in zip(shape, dims))
        if not ok:
            want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{path}: IDX dimensions are {dims}, expected {want}")
    count = 1
    for d in dims:
        count *= d
    if count > _MAX_VALUES:
        raise ValueError(f"{path}: IDX dimensions {dims} are implausibly large")
    dtype = _DTYPES[code]
    out = np.empty(count, dtype=dtype)
    got = _read_exact(stream, memoryview(out).cast("B"))
    want_bytes = count * dtype.itemsize
    if got != want_bytes:
        raise ValueError(f"{path}: IDX data is truncated: header {dims} needs {want_bytes} bytes "
                         f"of data, file has {got}")
    if stream.read(1):
        raise ValueError(f"{path}: IDX file has data past the {want_bytes} bytes its header "
                         f"{dims} announces")
    out = out.reshape(dims)
    if dtype.itemsize > 1:
        out = out.astype(dtype.newbyteorder("="))
    return out


def write_idx(path, array, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file; gzip it when ``compress`` (default: path ends in .gz).

    Writes to a temporary file next to ``path``, then renames it.
    """
    path = os.fspath(path)
    a = np.asarray(array)
    key = a.dtype.newbyteorder("=") if a.dtype.itemsize > 1 else a.dtype
    if key not in _CODES:
        raise TypeError(f"write_idx: dtype {a.dtype} has no IDX type code; expected one of "
                        "uint8, int8, int16, int32, float32, float64")
    if not 1 <= a.ndim <= 255:
        raise ValueError(f"write_idx: array must have 1..255 dimensions, got {a.ndim}")
    code = _CODES[key]
    data = (struct.pack(">HBB", 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
            + np.ascontiguousarray(a, dtype=_DTYPES[code]).tobytes())
    if compress is None:
        compress = path.endswith(".gz")
    if compress:
        # mtime=0: the same array gives the same bytes.
        data = gzip.compress(data, compresslevel=9, mtime=0)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def load_mnist_format(paths: dict, num_classes: int = 10):
    """``((x_train, y_train), (x_test, y_test))`` from the four MNIST-format IDX files.

    paths: ``{base name in MNIST_FILES: file path}``. Images are uint8 (N, 28, 28), labels
    uint8 (N,) with values below ``num_classes``; ValueError naming the file otherwise, or
    when a split's image and label counts differ.
    """
    out = []
    for split in ("train", "t10k"):
        img_path = paths[f"{split}-images-idx3-ubyte"]
        lab_path = paths[f"{split}-labels-idx1-ubyte"]
        x = read_idx(img_path, magic=MAGIC_IMAGES, shape=(None, 28, 28))
        y = read_idx(lab_path, magic=MAGIC_LABELS, shape=(None,))
        if len(x) != len(y):
            raise ValueError(f"{lab_path}: {len(y)} labels, but {img_path} holds {len(x)} images")
        if y.size and int(y.max()) >= num_classes:
            raise ValueError(f"{lab_path}: label {int(y.max())} out of range; expected "
                             f"0..{num_classes - 1}")
        out.append((x, y))
    return tuple(out)
