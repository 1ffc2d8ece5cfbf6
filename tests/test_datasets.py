"""zengrad.datasets: IDX parsing, the search order, downloads (against a local server),
the embedded Fashion-MNIST subset, and the full set where Debian's package installed it.

Nothing here reaches the network or the real ~/.cache: HOME, $ZENGRAD_DATA, the system
folder and the mirrors are all pointed at temporary folders and a server on 127.0.0.1.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import struct
import sys
import threading
import types

import numpy as np
import pytest

from zengrad import datasets
from zengrad.datasets import _fetch, _idx, fashion_mnist, mnist

FILES = _idx.MNIST_FILES
DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"


# ---------------------------------------------------------------- helpers

def idx_bytes(a: np.ndarray, code: int = 0x08) -> bytes:
    """IDX bytes written out by hand (independent of the module's writer)."""
    be = {0x08: "u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    return (bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
            + np.ascontiguousarray(a, dtype=be).tobytes())


def put(path, data: bytes, gz: bool) -> str:
    path = str(path) + (".gz" if gz else "")
    with open(path, "wb") as f:
        f.write(gzip.compress(data, mtime=0) if gz else data)
    return path


def fake_split(n: int, marker: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    y = np.full(n, marker, dtype=np.uint8)
    return x, y


def make_dataset(folder, marker: int = 3, gz: bool = True, n_train: int = 12, n_test: int = 5):
    """The four MNIST-format files in ``folder``; every label is ``marker``, and the images
    depend on it too, so that copies can be told apart."""
    os.makedirs(folder, exist_ok=True)
    xtr, ytr = fake_split(n_train, marker, 2 * marker)
    xte, yte = fake_split(n_test, marker, 2 * marker + 1)
    for base, a in zip(FILES, (xtr, ytr, xte, yte)):
        put(os.path.join(folder, base), idx_bytes(a), gz)
    return (xtr, ytr), (xte, yte)


def markers(data) -> tuple:
    (_, ytr), (_, yte) = data
    return int(ytr[0]), int(yte[0])


@pytest.fixture
def env(tmp_path, monkeypatch):
    """HOME, $ZENGRAD_DATA, the system folder and the mirrors, all under tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ZENGRAD_DATA", raising=False)
    monkeypatch.setattr(_fetch, "SYSTEM_DIR", str(tmp_path / "system"))
    # Any download attempt not set up by the test fails at once, locally.
    for mod in (mnist, fashion_mnist):
        monkeypatch.setattr(mod, "MIRRORS", ("http://127.0.0.1:9/",))
    return types.SimpleNamespace(tmp=tmp_path, home=home)


class Server:
    """http.server on 127.0.0.1 in a thread, serving a folder; counts GET requests."""

    def __init__(self, folder, handler_cls=None):
        self.requests = []
        server = self

        class Handler(handler_cls or http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def serve():
    servers = []

    def start(folder, handler_cls=None):
        servers.append(Server(folder, handler_cls))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def published(monkeypatch, mod, folder):
    """Point ``mod``'s hash table at the .gz files in ``folder``, as if they were official."""
    table = {}
    for base in FILES:
        with open(os.path.join(folder, base + ".gz"), "rb") as f:
            table[base + ".gz"] = hashlib.sha256(f.read()).hexdigest()
    monkeypatch.setattr(mod, "SHA256", table)


# ---------------------------------------------------------------- IDX parsing

@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_images_and_labels(tmp_path, gz):
    x = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28).astype(np.uint8)
    y = np.array([7, 0, 9], dtype=np.uint8)
    px = put(tmp_path / "img", idx_bytes(x), gz)
    py = put(tmp_path / "lab", idx_bytes(y), gz)
    gx = datasets.read_idx(px, magic=_idx.MAGIC_IMAGES, shape=(None, 28, 28))
    gy = datasets.read_idx(py, magic=_idx.MAGIC_LABELS, shape=(None,))
    assert gx.dtype == np.uint8 and gx.shape == (3, 28, 28) and np.array_equal(gx, x)
    assert gy.dtype == np.uint8 and np.array_equal(gy, y)
    assert gx.flags.writeable and gy.flags.writeable


def test_read_idx_knows_gzip_by_content_not_name(tmp_path):
    y = np.array([1, 2, 3], dtype=np.uint8)
    plain_named_gz = tmp_path / "a.gz"
    plain_named_gz.write_bytes(idx_bytes(y))
    gz_named_plain = tmp_path / "b"
    gz_named_plain.write_bytes(gzip.compress(idx_bytes(y)))
    assert np.array_equal(datasets.read_idx(plain_named_gz), y)
    assert np.array_equal(datasets.read_idx(gz_named_plain), y)


@pytest.mark.parametrize("code,dtype", [(0x0B, np.int16), (0x0D, np.float32)])
def test_read_idx_wider_types_come_back_native(tmp_path, code, dtype):
    a = np.array([[1, -2, 300], [4, 5, -600]], dtype=dtype)
    p = put(tmp_path / "w", idx_bytes(a, code), gz=False)
    got = datasets.read_idx(p)
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative and np.array_equal(got, a)


@pytest.mark.parametrize("name", ["w.idx", "w.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_write_idx_round_trip(tmp_path, name, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    p = tmp_path / name
    datasets.write_idx(p, a)
    assert (p.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    got = datasets.read_idx(p)
    assert got.dtype == np.dtype(dtype) and np.array_equal(got, a)
    assert os.listdir(tmp_path) == [name]


def test_write_idx_refuses_bad_dtype(tmp_path):
    with pytest.raises(TypeError, match="dtype"):
        datasets.write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint16))


_IMG = idx_bytes(np.zeros((2, 28, 28), np.uint8))
_LAB = idx_bytes(np.zeros(2, np.uint8))
BAD = {
    "empty": (b"", "at least a 4-byte header"),
    "nonzero-lead": (b"\x01" + _IMG[1:], "magic number"),
    "unknown-type": (_IMG[:2] + b"\x07" + _IMG[3:], "magic number"),
    "zero-dims": (b"\x00\x00\x08\x00", "magic number"),
    "labels-magic": (_LAB, "magic number is 0x00000801, expected 0x00000803"),
    "short-header": (_IMG[:10], "header is truncated"),
    "wrong-dims": (idx_bytes(np.zeros((2, 27, 28), np.uint8)), r"dimensions are \(2, 27, 28\)"),
    "wrong-ndim": (idx_bytes(np.zeros((2, 784), np.uint8)), "expected 0x00000803"),
    "short-data": (_IMG[:-1], "data is truncated"),
    "extra-data": (_IMG + b"\x00", "past the"),
    "huge-dims": (struct.pack(">HBB3I", 0, 8, 3, 2**32 - 1, 28, 28), "implausibly large"),
}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_idx_raises_valueerror_naming_file(tmp_path, case, gz):
    data, why = BAD[case]
    p = put(tmp_path / f"{case}-images", data, gz)
    with pytest.raises(ValueError, match=why) as ei:
        datasets.read_idx(p, magic=_idx.MAGIC_IMAGES, shape=(None, 28, 28))
    assert p in str(ei.value)


@pytest.mark.parametrize("cut", [5, 30])
def test_broken_gzip_raises_valueerror_naming_file(tmp_path, cut):
    p = tmp_path / "broken.gz"
    p.write_bytes(gzip.compress(_IMG)[:cut])
    with pytest.raises(ValueError, match="broken.gz"):
        datasets.read_idx(p)


def test_load_checks_counts_and_label_range(env):
    folder = env.tmp / "given"
    make_dataset(folder, gz=False)
    put(folder / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(4, np.uint8)), gz=False)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte: 4 labels, but .* 5 images"):
        fashion_mnist.load_data(path=folder)
    put(folder / "t10k-labels-idx1-ubyte", idx_bytes(np.full(5, 10, np.uint8)), gz=False)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte: label 10 out of range"):
        fashion_mnist.load_data(path=folder)


# ---------------------------------------------------------------- search order

@pytest.mark.parametrize("mod", [mnist, fashion_mnist], ids=["mnist", "fashion_mnist"])
def test_search_order(env, mod, monkeypatch):
    name = mod.NAME
    given, zdata = env.tmp / "given", env.tmp / "zdata"
    make_dataset(os.path.join(_fetch.SYSTEM_DIR, name), marker=4)
    assert markers(mod.load_data()) == (4, 4)                  # system folder

    make_dataset(env.home / ".cache" / "zengrad" / name, marker=3, gz=False)
    assert markers(mod.load_data()) == (3, 3)                  # ~/.cache/zengrad beats it

    make_dataset(zdata / name, marker=2)
    monkeypatch.setenv("ZENGRAD_DATA", str(zdata))
    assert markers(mod.load_data()) == (2, 2)                  # $ZENGRAD_DATA replaces ~/.cache

    make_dataset(given, marker=1)
    ((xtr, ytr), (xte, yte)) = mod.load_data(path=given)       # an explicit path beats all
    assert markers(((xtr, ytr), (xte, yte))) == (1, 1)
    assert xtr.shape == (12, 28, 28) and ytr.shape == (12,) and xte.shape == (5, 28, 28)
    assert xtr.dtype == ytr.dtype == np.uint8


def test_explicit_path_is_the_only_place_looked(env):
    make_dataset(os.path.join(_fetch.SYSTEM_DIR, "mnist"), marker=4)
    given = env.tmp / "given"
    make_dataset(given)
    os.remove(given / "train-labels-idx1-ubyte.gz")
    with pytest.raises(datasets.DatasetNotFoundError, match="train-labels-idx1-ubyte") as ei:
        mnist.load_data(path=given)
    assert str(given) in str(ei.value)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        mnist.load_data(path=env.tmp / "nowhere")


def test_mixed_and_dotted_file_names(env):
    folder = env.tmp / "mixed"
    make_dataset(folder, marker=6, gz=True)
    os.rename(folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-images.idx3-ubyte.gz")
    with gzip.open(folder / "train-images-idx3-ubyte.gz") as f:
        put(folder / "train-images-idx3-ubyte", f.read(), gz=False)
    os.remove(folder / "train-images-idx3-ubyte.gz")
    assert markers(mnist.load_data(path=folder)) == (6, 6)


def test_incomplete_cache_falls_through_to_system_folder(env, monkeypatch):
    zdata = env.tmp / "zdata"
    monkeypatch.setenv("ZENGRAD_DATA", str(zdata))
    make_dataset(zdata / "mnist", marker=2)
    os.remove(zdata / "mnist" / "t10k-images-idx3-ubyte.gz")
    make_dataset(os.path.join(_fetch.SYSTEM_DIR, "mnist"), marker=4)
    assert markers(mnist.load_data()) == (4, 4)


def test_cache_dir_env_and_home(env, monkeypatch):
    assert _fetch.cache_dir("mnist") == str(env.home / ".cache" / "zengrad" / "mnist")
    monkeypatch.setenv("ZENGRAD_DATA", "")          # empty counts as unset
    assert _fetch.cache_dir("mnist") == str(env.home / ".cache" / "zengrad" / "mnist")
    monkeypatch.setenv("ZENGRAD_DATA", str(env.tmp / "z"))
    assert _fetch.cache_dir("fashion-mnist") == str(env.tmp / "z" / "fashion-mnist")


# ---------------------------------------------------------------- downloads

@pytest.mark.parametrize("mod", [mnist, fashion_mnist], ids=["mnist", "fashion_mnist"])
def test_download_into_cache_then_reuse(env, mod, serve, monkeypatch, capsys):
    src = env.tmp / "served"
    (xtr, ytr), (xte, yte) = make_dataset(src, marker=5)
    published(monkeypatch, mod, src)
    srv = serve(src)
    monkeypatch.setattr(mod, "MIRRORS", (srv.url,))
    monkeypatch.setitem(sys.modules, "tqdm", None)              # the plain progress bar

    (gxtr, gytr), (gxte, gyte) = mod.load_data()
    assert np.array_equal(gxtr, xtr) and np.array_equal(gytr, ytr)
    assert np.array_equal(gxte, xte) and np.array_equal(gyte, yte)
    cache = env.home / ".cache" / "zengrad" / mod.NAME
    assert sorted(os.listdir(cache)) == sorted(b + ".gz" for b in FILES)   # no .part left
    for b in FILES:
        assert (cache / (b + ".gz")).read_bytes() == (src / (b + ".gz")).read_bytes()
    assert sorted(srv.requests) == sorted("/" + b + ".gz" for b in FILES)
    assert "100.0%" in capsys.readouterr().err

    mod.load_data()                                             # from the cache now
    assert len(srv.requests) == 4


def test_download_only_what_the_cache_lacks(env, serve, monkeypatch):
    src = env.tmp / "served"
    make_dataset(src, marker=5)
    published(monkeypatch, mnist, src)
    srv = serve(src)
    monkeypatch.setattr(mnist, "MIRRORS", (srv.url,))
    cache = env.home / ".cache" / "zengrad" / "mnist"
    cache.mkdir(parents=True)
    for b in FILES[:3]:
        (cache / (b + ".gz")).write_bytes((src / (b + ".gz")).read_bytes())
    assert markers(mnist.load_data()) == (5, 5)
    assert srv.requests == ["/t10k-labels-idx1-ubyte.gz"]


def test_download_uses_tqdm_when_present(env, serve, monkeypatch):
    src = env.tmp / "served"
    make_dataset(src)
    published(monkeypatch, mnist, src)
    monkeypatch.setattr(mnist, "MIRRORS", (serve(src).url,))
    seen = []

    class FakeTqdm:
        def __init__(self, total=None, desc=None, **kw):
            seen.append([desc, total, 0, False])

        def update(self, n):
            seen[-1][2] += n

        def close(self):
            seen[-1][3] = True

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeTqdm))
    mnist.load_data()
    assert len(seen) == 4
    for desc, total, done, closed in seen:
        assert desc.endswith(".gz") and total == done == (src / desc).stat().st_size and closed


def test_corrupt_download_is_refused_and_deleted(env, serve, monkeypatch):
    src = env.tmp / "served"
    make_dataset(src)
    published(monkeypatch, fashion_mnist, src)
    monkeypatch.setitem(fashion_mnist.SHA256, "train-images-idx3-ubyte.gz", "0" * 64)
    srv = serve(src)
    monkeypatch.setattr(fashion_mnist, "MIRRORS", (srv.url,))
    with pytest.raises(datasets.ChecksumMismatchError, match="SHA-256 mismatch") as ei:
        fashion_mnist.load_data()
    assert isinstance(ei.value, OSError)
    assert srv.url + "train-images-idx3-ubyte.gz" in str(ei.value)
    cache = env.home / ".cache" / "zengrad" / "fashion-mnist"
    assert os.listdir(cache) == []                               # neither the file nor a .part


def test_corrupt_mirror_falls_back_to_the_next(env, serve, monkeypatch):
    good, bad = env.tmp / "good", env.tmp / "bad"
    make_dataset(good, marker=7)
    make_dataset(bad, marker=8)
    published(monkeypatch, mnist, good)
    s_bad, s_good = serve(bad), serve(good)
    monkeypatch.setattr(mnist, "MIRRORS", (s_bad.url, s_good.url))
    assert markers(mnist.load_data()) == (7, 7)
    assert len(s_bad.requests) == 4 and len(s_good.requests) == 4


def test_404_says_where_it_looked_and_how_to_get_the_data(env, serve, monkeypatch):
    empty = env.tmp / "empty"
    empty.mkdir()
    srv = serve(empty)
    monkeypatch.setattr(fashion_mnist, "MIRRORS", (srv.url,))
    with pytest.raises(datasets.DatasetNotFoundError) as ei:
        fashion_mnist.load_data()
    msg = str(ei.value)
    assert isinstance(ei.value, FileNotFoundError)
    assert str(env.home / ".cache" / "zengrad" / "fashion-mnist") in msg
    assert os.path.join(_fetch.SYSTEM_DIR, "fashion-mnist") in msg
    assert srv.url + "train-images-idx3-ubyte.gz" in msg and "404" in msg
    for hint in ("apt-get install dataset-fashion-mnist", "ZENGRAD_DATA", "path=",
                 "load_embedded"):
        assert hint in msg
    assert srv.requests == ["/train-images-idx3-ubyte.gz"]       # gave up at the first file
    assert os.listdir(env.home / ".cache" / "zengrad" / "fashion-mnist") == []


def test_unreachable_mirror(env):
    with pytest.raises(datasets.DatasetNotFoundError, match="cannot connect") as ei:
        mnist.load_data()
    assert "ZENGRAD_DATA" in str(ei.value) and "path=" in str(ei.value)


def test_cut_off_download_leaves_no_file(env, serve, monkeypatch):
    src = env.tmp / "served"
    make_dataset(src)
    published(monkeypatch, mnist, src)

    class Truncating(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            data = (src / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True

    srv = serve(src, Truncating)
    monkeypatch.setattr(mnist, "MIRRORS", (srv.url,))
    with pytest.raises(datasets.DatasetNotFoundError, match="train-images-idx3-ubyte.gz"):
        mnist.load_data()
    assert os.listdir(env.home / ".cache" / "zengrad" / "mnist") == []


def test_file_without_known_hash_is_not_downloaded(env, serve, monkeypatch):
    src = env.tmp / "served"
    make_dataset(src)
    srv = serve(src)
    monkeypatch.setattr(mnist, "MIRRORS", (srv.url,))
    monkeypatch.setattr(mnist, "SHA256", {})
    with pytest.raises(datasets.DatasetNotFoundError, match="no SHA-256"):
        mnist.load_data()
    assert srv.requests == []


def test_published_hash_tables_are_complete():
    for mod in (mnist, fashion_mnist):
        assert sorted(mod.SHA256) == sorted(b + ".gz" for b in FILES)
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in mod.SHA256.values())


# ---------------------------------------------------------------- embedded subset

def test_embedded_subset():
    (xtr, ytr), (xte, yte) = datasets.fashion_mnist.load_embedded()
    assert datasets.load_embedded is fashion_mnist.load_embedded
    assert xtr.shape == (6000, 28, 28) and ytr.shape == (6000,)
    assert xte.shape == (1000, 28, 28) and yte.shape == (1000,)
    assert xtr.dtype == ytr.dtype == xte.dtype == yte.dtype == np.uint8
    assert np.array_equal(np.bincount(ytr, minlength=10), [600] * 10)
    assert np.array_equal(np.bincount(yte, minlength=10), [100] * 10)
    assert xtr.max() == 255 and xtr.min() == 0 and 40 < xtr.mean() < 110
    assert len(set(ytr[:50].tolist())) > 5                       # file order, not sorted by class
    assert os.path.getsize(fashion_mnist.EMBEDDED_FILE) < 4_000_000
    i_tr, i_te = fashion_mnist.embedded_indices()
    assert np.all(np.diff(i_tr) > 0) and np.all(np.diff(i_te) > 0)
    assert i_tr.max() < 60000 and i_te.max() < 10000


def test_embedded_licence_notice_ships_with_it():
    here = os.path.dirname(fashion_mnist.EMBEDDED_FILE)
    text = open(os.path.join(here, "LICENSE-fashion-mnist.txt"), encoding="utf-8").read()
    assert "Copyright (c) 2017 Zalando SE" in text and "Permission is hereby granted" in text


# ---------------------------------------------------------------- the full set (Debian)

@pytest.mark.skipif(not os.path.isdir(DEBIAN_FASHION),
                    reason=f"{DEBIAN_FASHION} absent (apt-get install dataset-fashion-mnist)")
def test_full_fashion_mnist_from_the_system_folder(env, monkeypatch):
    monkeypatch.setattr(_fetch, "SYSTEM_DIR", os.path.dirname(DEBIAN_FASHION))
    (xtr, ytr), (xte, yte) = fashion_mnist.load_data()
    assert xtr.shape == (60000, 28, 28) and ytr.shape == (60000,)
    assert xte.shape == (10000, 28, 28) and yte.shape == (10000,)
    assert xtr.dtype == ytr.dtype == np.uint8
    assert np.array_equal(np.bincount(ytr), [6000] * 10)
    assert np.array_equal(np.bincount(yte), [1000] * 10)
    assert not os.path.exists(env.home / ".cache")               # a found set writes nothing
    # The embedded subset is the first 600 / 100 of each class of these very files.
    (sxtr, sytr), (sxte, syte) = fashion_mnist.load_embedded()
    i_tr, i_te = fashion_mnist.embedded_indices()
    assert np.array_equal(xtr[i_tr], sxtr) and np.array_equal(ytr[i_tr], sytr)
    assert np.array_equal(xte[i_te], sxte) and np.array_equal(yte[i_te], syte)
    for y, idx, k in ((ytr, i_tr, 600), (yte, i_te, 100)):
        want = np.sort(np.concatenate([np.flatnonzero(y == c)[:k] for c in range(10)]))
        assert np.array_equal(idx, want)
