"""The "numba" backend: the JIT kernels of numba_cpu. Outputs are allocated here.

Arrays go to the kernels flat with their geometry as an int64 vector, so each kernel has one
compiled signature per dtype (and a warm cache serves every shape).
"""
import threading
import types

import numba  # ImportError here marks the backend unavailable
import numpy as np

from zengrad import _runtime

from . import _validate as V
from . import numba_cpu as K
from . import reference as R

MC_MAX = 192          # rows of a GEMM task (a multiple of K.MR): its packed A block stays in L2
NC_MAX = 1024         # columns of a GEMM task
TASKS_PER_THREAD = 4  # enough tiles to balance the load
MIN_TASK_FLOPS = 1 << 20  # less work than this is not worth handing to another thread


# Numba's "workqueue" threading layer (chosen where neither TBB nor OpenMP is installed) aborts
# the process when two threads launch parallel kernels at once; kernels then run one at a time.
# The layer is known only after the first launch, which therefore runs under the lock too.
_launch_lock = threading.Lock()
_serialize = None


def _launch(kernel, *args):
    global _serialize
    if _serialize is False:
        return kernel(*args)
    with _launch_lock:
        result = kernel(*args)
        _serialize = numba.threading_layer() == "workqueue"
        return result


def _threads() -> int:
    """Apply zengrad's thread count to Numba, whose setting is per calling thread."""
    n = min(_runtime.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


def _in(a):
    """A flat read-only view of input `a`: Numba compiles read-only and writeable arrays
    separately, so inputs always go in read-only (one signature per dtype)."""
    view = a.reshape(-1)
    view.flags.writeable = False
    return view


def _read_only(a):
    """A read-only view of `a` in its shape (see _in)."""
    view = a.view()
    view.flags.writeable = False
    return view


def _none(dtype):
    """An empty read-only array standing for an absent input."""
    return _in(np.empty(0, dtype))


def _geometry(g, o=0):
    return np.array((*g, o), np.int64)


def _ceil(a, b):
    return -(-a // b)


def _tiles(m, n, k, slabs, nr, threads):
    """(mc, nc): task tiles of the output, enough of them to keep every thread busy (tile sizes
    never change the bits)."""
    target = max(1, min(TASKS_PER_THREAD * threads, 2 * m * n * k // MIN_TASK_FLOPS))
    mc = min(MC_MAX, _ceil(m, K.MR) * K.MR)
    nc = min(NC_MAX, _ceil(n, nr) * nr)
    if _ceil(m, mc) == 1:
        # One row tile: split the columns, so that each task packs its own part of B, once.
        while slabs * _ceil(n, nc) < target and nc > nr:
            nc = _ceil(nc // 2, nr) * nr
        if slabs * _ceil(n, nc) >= min(target, 2 * threads):
            return mc, nc
    while slabs * _ceil(m, mc) * _ceil(n, nc) < target:
        if mc > K.MR:
            mc = _ceil(mc // 2, K.MR) * K.MR
        elif nc > nr:
            nc = _ceil(nc // 2, nr) * nr
        else:
            break
    return mc, nc


def _run_gemm(kind, src, geo, bkind, bsrc, bs0, bs1, out, alpha, beta, bias, relu, dbp, m, n, k, chunk, threads):
    """The driver on op(A) (m x k, read per `kind`) and op(B) (k x n, per `bkind`). B is packed
    whole first when several row tiles share it, else inside the tasks."""
    nr = K.nr_for(out.itemsize)
    mc, nc = _tiles(m, n, k, _ceil(k, chunk), nr, threads)
    if _ceil(m, mc) > 1:
        bp = np.empty(_ceil(n, nr) * nr * k, out.dtype)
        _launch(K.pack_b, bkind, bsrc, k, n, bs0, bs1, bp)
    else:
        bp = np.empty(0, out.dtype)
    coef = np.array([alpha, beta], out.dtype)
    _launch(K.gemm_driver, kind, src, geo, bkind, bsrc, bs0, bs1, bp, out, coef, bias, relu, dbp, m, n, k, chunk,
            mc, nc)


def gemm(a, b, out, trans_a, trans_b, alpha, beta, bias, relu):
    m, n = out.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0 or k == 0:
        return R._compute_gemm(a, b, out, trans_a, trans_b, alpha, beta, bias, relu)
    threads = _threads()
    geo = np.array([1, m] if trans_a else [k, 1], np.int64)        # A[i, p] = a[i*geo[0] + p*geo[1]]
    bs0, bs1 = (1, k) if trans_b else (n, 1)                        # B[p, j] = b[p*bs0 + j*bs1]
    _run_gemm(K.GEMM, _in(a), geo, K.B_MATRIX, _in(b), bs0, bs1, out.reshape(-1), alpha, beta,
              _none(out.dtype) if bias is None else _in(bias), relu, np.empty(0, out.dtype), m, n, k, k, threads)
    return out


def conv2d(x, w, b, g, relu=False):
    o = w.shape[3]
    y = np.empty((g.n, g.ho, g.wo, o), x.dtype)
    m, k = g.n * g.ho * g.wo, g.kh * g.kw * g.c
    if m == 0:
        return y
    threads = _threads()
    _run_gemm(K.CONV_FWD, _in(x), _geometry(g, o), K.B_MATRIX, _in(w), o, 1, y.reshape(-1), 1.0, 0.0,
              _none(x.dtype) if b is None else _in(b), relu, np.empty(0, x.dtype), m, o, k, k, threads)
    return y


def conv2d_backward_data(dy, w, g):
    o = w.shape[3]
    dx = np.empty(g.x_shape, dy.dtype)
    m, k = g.n * g.h * g.w, g.kh * g.kw * o
    if m == 0:
        return dx
    threads = _threads()
    _run_gemm(K.CONV_BWD_DATA, _in(dy), _geometry(g, o), K.B_CONV_BWD_DATA, _in(w), o, 0, dx.reshape(-1), 1.0, 0.0,
              _none(dy.dtype), False, np.empty(0, dy.dtype), m, g.c, k, k, threads)
    return dx


def conv2d_backward_weight(x, dy, w_shape, g, with_bias):
    o = w_shape[3]
    m, pixels = g.kh * g.kw * g.c, g.n * g.ho * g.wo
    if pixels == 0:
        dw, db = np.zeros(w_shape, x.dtype), np.zeros(o, x.dtype)
        return (dw, db) if with_bias else dw
    threads = _threads()
    dw = np.empty(w_shape, x.dtype)
    db = np.empty(o, x.dtype) if with_bias else None
    # The pixel sum is cut into chunks that depend on the shape alone, one partial dw each
    # (computed in parallel), added in chunk order: parallel, and the same bits for any
    # thread count.
    chunk = max(_ceil(pixels, 16), 512)
    chunks = _ceil(pixels, chunk)
    parts = dw.reshape(-1) if chunks == 1 else np.empty(chunks * m * o, x.dtype)
    db_parts = (db if chunks == 1 else np.empty(chunks * o, x.dtype)) if with_bias else np.empty(0, x.dtype)
    _run_gemm(K.CONV_BWD_WEIGHT, _in(x), _geometry(g, o), K.B_MATRIX, _in(dy), o, 1, parts, 1.0, 0.0,
              _none(x.dtype), False, db_parts, m, o, pixels, chunk, threads)
    if chunks > 1:
        _launch(K.sum_slabs, parts, chunks, m * o, dw.reshape(-1))
        if with_bias:
            _launch(K.sum_slabs, db_parts, chunks, o, db)
    return (dw, db) if with_bias else dw


def _channel_block(g, threads):
    """Channels per pooling unit (image, channel block): narrower when images are few."""
    cb = 64
    while cb > 16 and g.n * _ceil(g.c, cb) < 2 * threads:
        cb //= 2
    return cb


def max_pool2d(x, g, with_indices=False):
    y = np.empty((g.n, g.ho, g.wo, g.c), x.dtype)
    indices = np.empty(y.shape if with_indices else 0, np.int32)
    threads = _threads()
    _launch(K.max_pool, _in(x), y.reshape(-1), indices.reshape(-1), _geometry(g), _channel_block(g, threads))
    return (y, indices) if with_indices else y


def max_pool2d_backward(dy, x, g, indices=None):
    if indices is not None:
        V.pool_indices_in_image("max_pool2d_backward", indices, g)
    dx = np.empty(g.x_shape, dy.dtype)
    threads = _threads()
    _launch(K.max_pool_backward, _in(dy), _in(x), _in(np.empty(0, np.int32) if indices is None else indices),
            dx.reshape(-1), _geometry(g), _channel_block(g, threads))
    return dx


def avg_pool2d(x, g):
    y = np.empty((g.n, g.ho, g.wo, g.c), x.dtype)
    threads = _threads()
    _launch(K.avg_pool, _in(x), y.reshape(-1), _geometry(g), _channel_block(g, threads))
    return y


def avg_pool2d_backward(dy, x, g):
    dx = np.empty(g.x_shape, dy.dtype)
    threads = _threads()
    _launch(K.avg_pool_backward, _in(dy), dx.reshape(-1), _geometry(g), _channel_block(g, threads))
    return dx


def relu(x):
    y = np.empty_like(x)
    _threads()
    _launch(K.relu, _in(x), y.reshape(-1))
    return y


def relu_backward(dy, y):
    dx = np.empty_like(dy)
    _threads()
    _launch(K.relu_backward, _in(dy), _in(y), dx.reshape(-1))
    return dx


def dense_backward(dy, x, w, relu_output, with_dx, with_dw, with_bias):
    g = dy if relu_output is None else relu_backward(dy, relu_output)
    dx = gemm(g, w, np.empty((g.shape[0], x.shape[1]), g.dtype), False, True, 1.0, 0.0, None, False) if with_dx else None
    dw = gemm(x, g, np.empty(w.shape, g.dtype), True, False, 1.0, 0.0, None, False) if with_dw else None
    return dx, dw, g.sum(axis=0) if with_bias else None


def adam_update(param, grad, m, v, alpha, beta_1, beta_2, epsilon):
    _threads()
    _launch(K.adam_update, param.reshape(-1), _in(grad), m.reshape(-1), v.reshape(-1), alpha, beta_1, beta_2, epsilon)


def softmax_cross_entropy(logits, labels):
    probs = np.empty_like(logits)
    total, in_range = K.softmax_cross_entropy(_read_only(logits), _in(labels), probs)
    if not in_range:
        V.labels_in_range("softmax_cross_entropy", labels, logits.shape[1])
    with np.errstate(invalid="ignore"):  # no rows: NaN, as a mean over nothing
        return np.asarray(np.float64(total) / logits.shape[0]).astype(logits.dtype), probs


def softmax_cross_entropy_backward(probs, labels, dloss):
    dz = np.empty_like(probs)
    with np.errstate(divide="ignore"):  # no rows: a scale for nothing
        scale = dloss[()] / probs.dtype.type(probs.shape[0])
    if not K.softmax_cross_entropy_backward(_read_only(probs), _in(labels), scale, dz):
        V.labels_in_range("softmax_cross_entropy_backward", labels, probs.shape[1])
    return dz


BACKEND = types.SimpleNamespace(
    fast=None,  # no kernels that check their own arguments: every call takes the Python checks
    gemm=gemm, conv2d=conv2d, conv2d_backward_data=conv2d_backward_data,
    conv2d_backward_weight=conv2d_backward_weight, max_pool2d=max_pool2d,
    max_pool2d_backward=max_pool2d_backward, avg_pool2d=avg_pool2d, avg_pool2d_backward=avg_pool2d_backward,
    relu=relu, relu_backward=relu_backward, dense_backward=dense_backward, adam_update=adam_update,
    softmax_cross_entropy=softmax_cross_entropy, softmax_cross_entropy_backward=softmax_cross_entropy_backward,
)
