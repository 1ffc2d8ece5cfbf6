"""Finding the data files of a dataset: the search path, downloads, hashes, progress.

Where a loader looks, in order:

1. ``path``, when the caller gives one (and nowhere else: an explicit folder that lacks a file
   is an error, not a reason to look elsewhere);
2. the cache folder ``$ZENGRAD_DATA/<name>/``, else ``~/.cache/zengrad/<name>/``;
3. the system folder ``/usr/share/datasets/<name>/`` (``SYSTEM_DIR``);
4. a download from the dataset's official mirrors into the cache folder.

A folder counts only when it holds every file of the dataset, each plain or gzipped.
Downloads stream into a temporary file in the cache folder, are checked against a SHA-256
known in advance, and only then are renamed to their final name, so a broken or corrupt
download never leaves a file that looks valid. Files found locally are not hashed (Debian,
for one, recompresses the .gz files, so their bytes differ from the official ones); their
IDX headers and sizes are validated when they are read.

Errors (all are OSError):
  DatasetNotFoundError (a FileNotFoundError): the data is nowhere and could not be
      downloaded; the message lists every place looked at and how to get the data.
  ChecksumMismatchError: a download finished but its SHA-256 is wrong (the bad file is
      deleted); raised when no mirror gave a good copy.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

SYSTEM_DIR = "/usr/share/datasets"
ENV_VAR = "ZENGRAD_DATA"
TIMEOUT_S = 60.0
_CHUNK = 1 << 20


class DatasetError(OSError):
    """Base class of the errors raised when a dataset's files cannot be had."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset is in none of the places looked at and could not be downloaded."""


class ChecksumMismatchError(DatasetError):
    """A downloaded file's SHA-256 differs from the published one; the file was deleted."""


@dataclass(frozen=True)
class Dataset:
    """What the search needs to know about one dataset."""
    name: str                       # folder name under the cache and system folders
    title: str                      # for messages, e.g. "Fashion-MNIST"
    files: tuple                    # base names without ".gz", e.g. "train-images-idx3-ubyte"
    mirrors: tuple                  # base URLs, tried in order
    sha256: dict                    # "<file>.gz" -> hex digest of the published .gz
    how_to_get: tuple = field(default=())   # extra lines for the "how to get it" advice
    note: str = ""                          # a last line for the error message


def cache_dir(name: str) -> str:
    """``$ZENGRAD_DATA/<name>`` if that variable is set and not empty, else
    ``~/.cache/zengrad/<name>``."""
    root = os.environ.get(ENV_VAR)
    if not root:
        root = os.path.join(os.path.expanduser("~"), ".cache", "zengrad")
    return os.path.join(root, name)


def system_dir(name: str) -> str:
    return os.path.join(SYSTEM_DIR, name)


def _candidates(base: str) -> list[str]:
    # "train-images-idx3-ubyte" is the official name; some copies use "train-images.idx3-ubyte".
    dotted = base.replace("-idx", ".idx", 1)
    names = [base, base + ".gz"]
    if dotted != base:
        names += [dotted, dotted + ".gz"]
    return names


def find_in(folder: str, files) -> tuple[dict, list]:
    """``({base: path}, [missing bases])`` for the dataset files in ``folder``."""
    found, missing = {}, []
    for base in files:
        for cand in _candidates(base):
            p = os.path.join(folder, cand)
            if os.path.isfile(p):
                found[base] = p
                break
        else:
            missing.append(base)
    return found, missing


def _describe_missing(missing) -> str:
    return ", ".join(f"{m}[.gz]" for m in missing)


def locate(ds: Dataset, path=None) -> dict:
    """``{base name: file path}`` for every file of ``ds``, downloading what is missing.

    Follows the search order in the module docstring.
    """
    if path is not None:
        folder = os.fspath(path)
        if not os.path.isdir(folder):
            raise DatasetNotFoundError(
                f"{ds.title}: path={folder!r} is not a folder; expected a folder holding "
                f"the four IDX files ({_describe_missing(ds.files)})")
        found, missing = find_in(folder, ds.files)
        if missing:
            raise DatasetNotFoundError(
                f"{ds.title}: the folder given as path={folder!r} lacks "
                f"{_describe_missing(missing)}")
        return found

    looked = []
    cache = cache_dir(ds.name)
    cache_found, cache_missing = find_in(cache, ds.files)
    if not cache_missing:
        return cache_found
    looked.append(_where("cache folder", cache, cache_missing))

    system = system_dir(ds.name)
    found, missing = find_in(system, ds.files)
    if not missing:
        return found
    looked.append(_where("system folder", system, missing))

    attempts = []
    for base in cache_missing:
        got = _download_one(ds, base + ".gz", cache, attempts)
        if got is None:
            raise _not_found(ds, looked, attempts)
        cache_found[base] = got
    return cache_found


def _where(kind: str, folder: str, missing) -> str:
    if not os.path.isdir(folder):
        return f"{kind} {folder} (does not exist)"
    return f"{kind} {folder} (missing {_describe_missing(missing)})"


def _not_found(ds: Dataset, looked, attempts) -> DatasetError:
    lines = [f"{ds.title} was not found, and downloading it failed.", "Looked in:"]
    lines += [f"  - {w}" for w in looked]
    lines.append("Tried to download:")
    lines += [f"  - {url}: {why}" for url, why, _ in attempts]
    lines.append("To get the data, do one of:")
    lines += [f"  - {h}" for h in ds.how_to_get]
    lines += [
        f"  - put the four IDX files ({_describe_missing(ds.files)}) in a folder and call "
        "load_data(path=that_folder)",
        f"  - put them in ${ENV_VAR}/{ds.name}/ (or ~/.cache/zengrad/{ds.name}/ when "
        f"${ENV_VAR} is unset), or in {system_dir(ds.name)}/",
        "  - allow this machine to reach one of: " + ", ".join(ds.mirrors),
    ]
    if ds.note:
        lines.append(ds.note)
    cls = ChecksumMismatchError if any(bad for _, _, bad in attempts) else DatasetNotFoundError
    return cls("\n".join(lines))


def _download_one(ds: Dataset, fname: str, folder: str, attempts: list):
    """Fetch ``fname`` from the first mirror that gives a good copy; its path, or None."""
    want = ds.sha256.get(fname)
    if want is None:
        # A file with no known hash is never downloaded: nothing could vouch for it.
        attempts.append((fname, "no SHA-256 is known for this file", False))
        return None
    for base in ds.mirrors:
        url = base.rstrip("/") + "/" + fname
        try:
            return download(url, os.path.join(folder, fname), want)
        except ChecksumMismatchError as e:
            attempts.append((url, str(e), True))
        except (OSError, ValueError, http.client.HTTPException) as e:
            # URLError, HTTPError, timeouts, refused connections, cut-off bodies, bad URLs
            attempts.append((url, _reason(e), False))
    return None


def _reason(e: Exception) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"cannot connect ({e.reason})"
    if type(e) is OSError:
        return str(e)
    return f"{type(e).__name__}: {e}"


def download(url: str, dest: str, sha256: str) -> str:
    """Download ``url`` to ``dest`` if its SHA-256 is ``sha256``; returns ``dest``.

    The bytes go to a temporary file beside ``dest``, renamed to ``dest`` only once complete
    and verified. A wrong hash raises ChecksumMismatchError (and the file is deleted);
    network errors propagate as OSError (urllib's URLError/HTTPError, TimeoutError).
    """
    folder = os.path.dirname(dest) or "."
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(dest)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
    try:
        h = hashlib.sha256()
        req = urllib.request.Request(url, headers={"User-Agent": "zengrad-datasets"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            with _progress(name, total) as bar:
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    h.update(chunk)
                    done += len(chunk)
                    bar(len(chunk))
            if total is not None and done != total:
                raise OSError(f"the transfer stopped after {done} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        got = h.hexdigest()
        if got != sha256.lower():
            raise ChecksumMismatchError(
                f"SHA-256 mismatch for {url}: got {got}, expected {sha256}; the corrupt download "
                "was deleted")
        os.replace(tmp, dest)
        return dest
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class _progress:
    """A byte counter shown with tqdm when it is importable, else a plain line on stderr.

    Used as ``with _progress(name, total) as bar: bar(nbytes)``.
    """

    def __init__(self, name: str, total: int | None):
        self.name, self.total, self.done = name, total, 0
        self._tqdm = None
        self._last = 0.0

    def __enter__(self):
        try:
            from tqdm import tqdm
        except ImportError:
            self._print(force=True)
        else:
            self._tqdm = tqdm(total=self.total, desc=self.name, unit="B", unit_scale=True,
                              unit_divisor=1024, file=sys.stderr, leave=True)
        return self._update

    def _update(self, n: int) -> None:
        self.done += n
        if self._tqdm is not None:
            self._tqdm.update(n)
        else:
            self._print()

    def _print(self, force: bool = False, end: str = "") -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.25:
            return
        self._last = now
        mb = self.done / 1e6
        if self.total:
            pct = 100.0 * self.done / self.total
            width = 30
            fill = int(width * self.done / self.total)
            text = (f"\r{self.name}: [{'#' * fill}{'.' * (width - fill)}] "
                    f"{pct:5.1f}% {mb:.1f}/{self.total / 1e6:.1f} MB")
        else:
            text = f"\r{self.name}: {mb:.1f} MB"
        sys.stderr.write(text + end)
        sys.stderr.flush()

    def __exit__(self, *exc):
        if self._tqdm is not None:
            self._tqdm.close()
        else:
            self._print(force=True, end="\n")
        return False
