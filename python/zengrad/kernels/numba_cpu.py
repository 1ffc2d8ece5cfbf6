"""Numba twins of the C++ kernels: GEMM, conv2d (three passes, the forward with a fused
ReLU), max/avg pooling and ReLU, float32 and float64.

Arrays arrive flat (1-D, C order) with their geometry as an int64 vector (the fields of
`_validate.Window`), so each kernel compiles once per dtype. GEMM and the convolutions share
one BLIS-style driver: each task packs its own block of A (for a convolution, gathered from
the image: implicit GEMM) and runs an MR x NR micro-kernel whose accumulators live in
registers, over B packed into panels of NR columns (once for all tasks when several row
tiles share it, else by each task for its own columns, or read in place). Work is split over
output tiles (and, for the weight gradient, over fixed chunks of the pixel sum added in
chunk order), never over the terms of one sum in a way that depends on the thread count:
the bits are the same for any number of threads.

Compiled with cache=True: a second process loads the machine code instead of compiling it.
"""
from __future__ import annotations

import numba as nb
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils, config
from numba.core.codegen import get_host_cpu_features
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic


def _has_avx512() -> bool:
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else get_host_cpu_features()
    return "+avx512f" in str(features).split(",")


AVX512 = _has_avx512()
VEC_BYTES = 64 if AVX512 else 32     # one SIMD register
MR = 6                               # micro-tile rows (written out by hand in _micro)
NR_BYTES = 2 * VEC_BYTES             # micro-tile row: two registers (NR = NR_BYTES // itemsize)
ACC_COLS = NR_BYTES // 4             # the widest micro-tile row (float32)
ACC_SIZE = MR * ACC_COLS
KC = 256                             # depth of a packed block: an NR-wide B panel of it fills ~L1

GEMM, CONV_FWD, CONV_BWD_DATA, CONV_BWD_WEIGHT = 0, 1, 2, 3   # how A (and B) are read
B_MATRIX, B_CONV_BWD_DATA = 0, 1

_JIT = dict(cache=True, nogil=True)
_FAST = dict(cache=True, nogil=True, fastmath={"contract"})   # FMA; no reassociation


def nr_for(itemsize: int) -> int:
    """Columns of a micro-tile (and of a packed B panel) for elements of `itemsize` bytes."""
    return NR_BYTES // itemsize


# ---- two compiler hooks: a stack buffer, and 512-bit vectors where the CPU has them ----

@intrinsic
def _stack_buffer(typingctx, size, dtype):
    """A pointer to `size` (a compile-time constant) elements on the stack. It never escapes,
    so LLVM keeps it in registers when every index into it is a constant."""
    if not isinstance(size, types.IntegerLiteral):
        return None
    element = dtype.dtype

    def codegen(context, builder, signature, args):
        if AVX512:
            # LLVM prefers 256-bit vectors on AVX-512 CPUs unless a function asks otherwise; the
            # micro-kernel is the one place where 512 bits pay. llvmlite checks attribute names
            # against a list that lacks string attributes, hence set.add.
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return cgutils.alloca_once(builder, context.get_value_type(element), size=size.literal_value)

    return types.CPointer(element)(size, dtype), codegen


@intrinsic
def _nr(typingctx, array):
    """nr_for(array.itemsize) as a compile-time constant (loops over it unroll into registers)."""
    columns = NR_BYTES * 8 // array.dtype.bitwidth

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, columns)

    return types.intp(array), codegen


@intrinsic
def _writeable_view(typingctx, array):
    """`array` (1-D, C order) typed as writeable, to share a variable with scratch arrays; only
    read through it."""
    result = types.Array(array.dtype, 1, "C")

    def codegen(context, builder, signature, args):
        source = context.make_array(signature.args[0])(context, builder, args[0])
        view = context.make_array(result)(context, builder)
        view.meminfo = source.meminfo
        view.parent = source.parent
        view.nitems = source.nitems
        view.itemsize = source.itemsize
        view.data = source.data
        view.shape = source.shape
        view.strides = source.strides
        return impl_ret_borrowed(context, builder, result, view._getvalue())

    return result(array), codegen


# ---- GEMM: micro-kernel, packing, driver ----

@njit(inline="always", **_FAST)
def _micro(ap, aoff, bp, boff, ldb, kc, c, coff, ldc, mr, nr, alpha, beta, first):
    """C[0:mr, 0:nr] (at c[coff], row stride ldc) = or += alpha * Ap @ Bp for a packed MR x kc
    panel of A (k-major) and a kc x NR block of B (at bp[boff], row stride ldb: a packed panel,
    or B itself). `first`: store alpha*acc + beta*C (C not read when beta == 0); otherwise add
    alpha*acc."""
    NR = _nr(c)
    acc = nb.carray(_stack_buffer(ACC_SIZE, c.dtype), (MR, ACC_COLS))
    for r in range(MR):
        for j in range(NR):
            acc[r, j] = 0
    A = ap[aoff:aoff + kc * MR].reshape((kc, MR))
    for k in range(kc):
        a0 = A[k, 0]
        a1 = A[k, 1]
        a2 = A[k, 2]
        a3 = A[k, 3]
        a4 = A[k, 4]
        a5 = A[k, 5]
        bk = boff + k * ldb
        for j in range(NR):       # contiguous columns: two vector registers per row
            b = bp[np.uint64(bk + j)]    # unsigned: no negative-index wraparound to get in the way
            acc[0, j] += a0 * b
            acc[1, j] += a1 * b
            acc[2, j] += a2 * b
            acc[3, j] += a3 * b
            acc[4, j] += a4 * b
            acc[5, j] += a5 * b
    for r in range(mr):
        row = c[coff + r * ldc:coff + r * ldc + nr]
        if not first:
            for j in range(nr):
                row[j] += alpha * acc[r, j]
        elif beta == 0:
            for j in range(nr):
                row[j] = alpha * acc[r, j]
        else:
            for j in range(nr):
                row[j] = alpha * acc[r, j] + beta * row[j]


@njit(**_JIT)
def _pack_a(kind, src, geo, ap, tmp, i0, rows, p0, kc):
    """Rows i0 .. i0+rows of op(A), columns p0 .. p0+kc, into ap as panels of MR rows, each
    k-major (ap[(panel*kc + k)*MR + r]); rows past the end are zero.

    kind GEMM: A[i, k] = src[i*geo[0] + k*geo[1]].
    kind CONV_FWD: row = output pixel (n, oh, ow), column = (tap, ci): x at the tap, 0 on padding.
    kind CONV_BWD_DATA: row = input pixel (n, ih, iw), column = (tap, co): the dy of the output
      pixel that the tap maps the input pixel to, 0 where the stride lands on none.
    kind CONV_BWD_WEIGHT: row = (tap, ci), column = output pixel: x at the tap (`tmp`: scratch
      of rows*kc elements).
    For the convolutions geo = (n, h, w, c, kh, kw, ho, wo, sh, sw, dh, dw, pt, pb, pl, pr, o).
    """
    panels = (rows + MR - 1) // MR
    if kind == GEMM:
        s0, s1 = geo[0], geo[1]
        for q in range(panels):
            P = ap[q * kc * MR:(q + 1) * kc * MR].reshape((kc, MR))
            height = min(MR, rows - q * MR)
            first = i0 + q * MR
            if height == MR and s1 == 1:       # six rows of A read side by side, P written in order
                r0 = src[first * s0 + p0:first * s0 + p0 + kc]
                r1 = src[(first + 1) * s0 + p0:(first + 1) * s0 + p0 + kc]
                r2 = src[(first + 2) * s0 + p0:(first + 2) * s0 + p0 + kc]
                r3 = src[(first + 3) * s0 + p0:(first + 3) * s0 + p0 + kc]
                r4 = src[(first + 4) * s0 + p0:(first + 4) * s0 + p0 + kc]
                r5 = src[(first + 5) * s0 + p0:(first + 5) * s0 + p0 + kc]
                for k in range(kc):
                    P[k, 0] = r0[k]
                    P[k, 1] = r1[k]
                    P[k, 2] = r2[k]
                    P[k, 3] = r3[k]
                    P[k, 4] = r4[k]
                    P[k, 5] = r5[k]
                continue
            for k in range(kc):
                if s0 == 1:                    # op(A) = a.T: the panel's rows are adjacent in a
                    line = src[(p0 + k) * s1 + first:(p0 + k) * s1 + first + height]
                    for r in range(height):
                        P[k, r] = line[r]
                else:
                    for r in range(height):
                        P[k, r] = src[(first + r) * s0 + (p0 + k) * s1]
                for r in range(height, MR):
                    P[k, r] = 0
        return
    h, w, c = geo[1], geo[2], geo[3]
    kw, ho, wo = geo[5], geo[6], geo[7]
    sh, sw, dh, dw = geo[8], geo[9], geo[10], geo[11]
    pt, pl, o = geo[12], geo[14], geo[16]
    if kind == CONV_FWD or kind == CONV_BWD_DATA:
        width = c if kind == CONV_FWD else o      # channels per tap in a row of A
        for q in range(panels):
            P = ap[q * kc * MR:(q + 1) * kc * MR].reshape((kc, MR))
            for r in range(MR):
                i = q * MR + r
                if i >= rows:
                    for k in range(kc):
                        P[k, r] = 0
                    continue
                pixel = i0 + i
                if kind == CONV_FWD:
                    ow = pixel % wo
                    oh = pixel // wo % ho
                    img = pixel // (wo * ho)
                else:
                    iw = pixel % w
                    ih = pixel // w % h
                    img = pixel // (w * h)
                tap = p0 // width
                ch = p0 % width
                k = 0
                while k < kc:
                    run = min(width - ch, kc - k)
                    ti = tap // kw
                    tj = tap % kw
                    start = -1
                    if kind == CONV_FWD:
                        y = oh * sh - pt + ti * dh
                        x = ow * sw - pl + tj * dw
                        if y >= 0 and y < h and x >= 0 and x < w:
                            start = ((img * h + y) * w + x) * c + ch
                    else:
                        ys = ih + pt - ti * dh
                        xs = iw + pl - tj * dw
                        if ys >= 0 and xs >= 0 and ys % sh == 0 and xs % sw == 0:
                            y = ys // sh
                            x = xs // sw
                            if y < ho and x < wo:
                                start = ((img * ho + y) * wo + x) * o + ch
                    if start >= 0:
                        seg = src[start:start + run]
                        for t in range(run):
                            P[k + t, r] = seg[t]
                    else:
                        for t in range(run):
                            P[k + t, r] = 0
                    k += run
                    tap += 1
                    ch = 0
        return
    # CONV_BWD_WEIGHT: rows (tap, ci), columns output pixels p0 .. p0+kc. Gathered pixel by
    # pixel into `tmp` (k-major, so each tap's channels are one contiguous run), then cut into
    # panels: two streaming passes instead of one scattered one.
    T = tmp[:kc * rows].reshape((kc, rows))
    for k in range(kc):
        pixel = p0 + k
        ow = pixel % wo
        oh = pixel // wo % ho
        img = pixel // (wo * ho)
        tap = i0 // c
        ch = i0 % c
        line = T[k]
        r = 0
        while r < rows:
            run = min(c - ch, rows - r)
            y = oh * sh - pt + tap // kw * dh
            x = ow * sw - pl + tap % kw * dw
            if y >= 0 and y < h and x >= 0 and x < w:
                seg = src[((img * h + y) * w + x) * c + ch:((img * h + y) * w + x) * c + ch + run]
                for t in range(run):
                    line[r + t] = seg[t]
            else:
                for t in range(run):
                    line[r + t] = 0
            r += run
            tap += 1
            ch = 0
    for q in range(panels):
        P = ap[q * kc * MR:(q + 1) * kc * MR].reshape((kc, MR))
        height = min(MR, rows - q * MR)
        for k in range(kc):
            for t in range(height):
                P[k, t] = T[k, q * MR + t]
            for t in range(height, MR):
                P[k, t] = 0


@njit(**_JIT)
def _pack_b(kind, src, s0, s1, N, bp, j0, cols, p0, kc):
    """Rows p0 .. p0+kc and columns j0 .. j0+cols of op(B) into bp as panels of NR columns,
    each k-major (bp[(panel*kc + k)*NR + j]); zero past the last column.

    kind B_MATRIX: B[k, j] = src[k*s0 + j*s1]. kind B_CONV_BWD_DATA: the filters w (kh, kw, N,
    o) as a (kh*kw*o, N) matrix, B[(tap, co), ci] = w[tap, ci, co], with o passed as s0.
    """
    NR = _nr(bp)
    for q in range((cols + NR - 1) // NR):
        c0 = j0 + q * NR
        nr = min(NR, j0 + cols - c0)
        P = bp[q * kc * NR:(q + 1) * kc * NR].reshape((kc, NR))
        if kind == B_MATRIX and s1 == 1:
            for k in range(kc):
                line = src[(p0 + k) * s0 + c0:(p0 + k) * s0 + c0 + nr]
                for j in range(nr):
                    P[k, j] = line[j]
                for j in range(nr, NR):
                    P[k, j] = 0
        elif kind == B_MATRIX:
            for k in range(kc):
                for j in range(NR):
                    P[k, j] = 0
            for j in range(nr):
                line = src[(c0 + j) * s1 + p0 * s0:]
                for k in range(kc):
                    P[k, j] = line[k * s0]
        else:
            o = s0
            for k in range(kc):
                tap = (p0 + k) // o
                co = (p0 + k) % o
                for j in range(nr):
                    P[k, j] = src[(tap * N + c0 + j) * o + co]
                for j in range(nr, NR):
                    P[k, j] = 0


@njit(parallel=True, **_JIT)
def pack_b(kind, src, K, N, s0, s1, bp):
    """All of op(B) (K x N) into bp as panels of NR columns, each k-major over the whole K
    (bp[(panel*K + k)*NR + j]); see _pack_b."""
    NR = _nr(bp)
    first = K - K            # not the literal 0, which would compile _pack_b a second time
    for q in prange((N + NR - 1) // NR):
        _pack_b(kind, src, s0, s1, N, bp[q * K * NR:(q + 1) * K * NR], q * NR, min(NR, N - q * NR), first, K)


@njit(parallel=True, **_FAST)
def gemm_driver(kind, src, geo, bkind, bsrc, bs0, bs1, bp, out, coef, bias, relu, dbp, M, N, K, chunk, mc, nc):
    """out = alpha * A @ B (+ beta * out) (+ bias per column) (then max(out, 0) if relu), A read
    per `kind` (see _pack_a), B per `bkind` (see _pack_b); coef = (alpha, beta) in the dtype.

    B is either packed whole beforehand into bp (by pack_b: worth it when several row tiles
    share it) or, when bp is empty, by each task for its own columns and rows of the sum.
    The sum over k is cut into `chunk`-long chunks, each into its own M x N slab of `out` (the
    caller adds the slabs in order); with chunk >= K there is one slab: `out` itself. Tasks
    are (chunk, mc rows, nc columns) tiles: whichever thread runs a tile, each element is the
    same sequence of operations. dbp (if not empty): per chunk, the column sums of B (the
    bias gradient of a convolution), taken from the packed panels.
    """
    NR = _nr(out)
    alpha = coef[0]
    beta = coef[1]
    chunks = (K + chunk - 1) // chunk
    mt = (M + mc - 1) // mc
    nt = (N + nc - 1) // nc
    local = bp.size == 0
    direct = local and bkind == B_MATRIX and bs1 == 1    # full panels of B read where they are
    bview = _writeable_view(bsrc)
    for t in prange(chunks * mt * nt):
        ch = t // (mt * nt)
        i0 = (t // nt) % mt * mc
        j0 = t % nt * nc
        rows = min(mc, M - i0)
        cols = min(nc, N - j0)
        k_begin = ch * chunk
        k_end = min(K, k_begin + chunk)
        slab = ch * M * N
        ap = np.empty(mc * KC, out.dtype)
        tmp = np.empty(mc * KC if kind == CONV_BWD_WEIGHT else 0, out.dtype)
        block = np.empty(KC * ((nc + NR - 1) // NR * NR) if local else 0, out.dtype)
        sums = dbp[ch * N + j0:ch * N + j0 + cols]
        if i0 > 0:
            sums = sums[:0]          # one row tile per column range adds up the bias gradient
        for j in range(sums.size):
            sums[j] = 0
        for p0 in range(k_begin, k_end, KC):
            kc = min(KC, k_end - p0)
            _pack_a(kind, src, geo, ap, tmp, i0, rows, p0, kc)
            if local and not direct:
                _pack_b(bkind, bsrc, bs0, bs1, N, block, j0, cols, p0, kc)
            for jr in range(0, cols, NR):
                nr = min(NR, cols - jr)
                if direct and nr == NR:
                    B = bview
                    boff = p0 * bs0 + j0 + jr
                    ldb = bs0
                elif direct:
                    _pack_b(bkind, bsrc, bs0, bs1, N, block, j0 + jr, nr, p0, kc)
                    B = block
                    boff = 0
                    ldb = NR
                elif local:
                    B = block
                    boff = jr // NR * kc * NR
                    ldb = NR
                else:
                    B = bp
                    boff = ((j0 + jr) // NR * K + p0) * NR
                    ldb = NR
                for ir in range(0, rows, MR):
                    _micro(ap, ir * kc, B, boff, ldb, kc, out, slab + (i0 + ir) * N + j0 + jr, N,
                           min(MR, rows - ir), nr, alpha, beta, p0 == k_begin)
                if sums.size > 0:
                    for k in range(kc):
                        line = B[boff + k * ldb:boff + k * ldb + nr]
                        for j in range(nr):
                            sums[jr + j] += line[j]
        if bias.size > 0:
            b = bias[j0:j0 + cols]
            for i in range(rows):
                row = out[slab + (i0 + i) * N + j0:slab + (i0 + i) * N + j0 + cols]
                for j in range(cols):
                    row[j] += b[j]
        if relu:
            zero = alpha - alpha
            for i in range(rows):
                row = out[slab + (i0 + i) * N + j0:slab + (i0 + i) * N + j0 + cols]
                for j in range(cols):
                    if row[j] < 0:
                        row[j] = zero


@njit(parallel=True, **_JIT)
def sum_slabs(parts, slabs, size, out):
    """out[e] = parts[e] + parts[size + e] + ... (slabs of `size` elements, in order)."""
    for e in prange(size):
        s = parts[e]
        for q in range(1, slabs):
            s += parts[q * size + e]
        out[e] = s


# ---- pooling ----

@njit(inline="always", **_JIT)
def _taps(start, step, k, size):
    """The taps [first, last) of a window starting at input coordinate `start` that land in
    [0, size); the others fall on padding."""
    if start >= 0:
        first = 0
    else:
        first = (step - 1 - start) // step
    if start >= size:
        last = 0
    else:
        last = min(k, (size - start + step - 1) // step)
    return first, max(first, last)


@njit(inline="always", **_JIT)
def _find_winners(x, image, c, w, oh, ow, sh, sw, dh, dw, pt, pl, r0, r1, q0, q1, best, winner, width):
    """The maximum of each of `width` channels over one window (first maximum; a NaN counts as
    the maximum, the first NaN wins) into best[:width], its pixel ih * w + iw into winner.
    Padding never wins: a window whose real elements are all -inf takes its first real one."""
    lead = -1
    if r0 < r1 and q0 < q1:
        lead = (oh * sh - pt + r0 * dh) * w + (ow * sw - pl + q0 * dw)
    for k in range(width):
        best[k] = -np.inf
        winner[k] = lead
    for i in range(r0, r1):
        for j in range(q0, q1):
            p = (oh * sh - pt + i * dh) * w + (ow * sw - pl + j * dw)
            xs = x[image + p * c:image + p * c + width]
            for k in range(width):
                v = xs[k]
                m = best[k]
                if (v > m) | ((v != v) & (m == m)):
                    best[k] = v
                    winner[k] = p


@njit(parallel=True, **_JIT)
def max_pool(x, y, indices, geo, cb):
    """y = the max of each window (see _find_winners); with a non-empty `indices` (int32, y's
    size) also the pixel of each. Units = (image, channel block of cb), each owning its slice
    of y."""
    n, h, w, c = geo[0], geo[1], geo[2], geo[3]
    kh, kw, ho, wo = geo[4], geo[5], geo[6], geo[7]
    sh, sw, dh, dw = geo[8], geo[9], geo[10], geo[11]
    pt, pl = geo[12], geo[14]
    blocks = (c + cb - 1) // cb
    for u in prange(n * blocks):
        img = u // blocks
        c0 = u % blocks * cb
        width = min(cb, c - c0)
        image = img * h * w * c + c0
        winner = np.empty(cb if indices.size > 0 else 0, np.int32)
        for oh in range(ho):
            r0, r1 = _taps(oh * sh - pt, dh, kh, h)
            for ow in range(wo):
                q0, q1 = _taps(ow * sw - pl, dw, kw, w)
                at = ((img * ho + oh) * wo + ow) * c + c0
                yo = y[at:at + width]
                if indices.size > 0:
                    _find_winners(x, image, c, w, oh, ow, sh, sw, dh, dw, pt, pl, r0, r1, q0, q1, yo, winner, width)
                    idx = indices[at:at + width]
                    for k in range(width):
                        idx[k] = winner[k]
                    continue
                for k in range(width):
                    yo[k] = -np.inf
                for i in range(r0, r1):
                    for j in range(q0, q1):
                        p = (oh * sh - pt + i * dh) * w + (ow * sw - pl + j * dw)
                        xs = x[image + p * c:image + p * c + width]
                        for k in range(width):
                            v = xs[k]
                            m = yo[k]
                            if (v > m) | ((v != v) & (m == m)):
                                yo[k] = v


@njit(parallel=True, **_JIT)
def max_pool_backward(dy, x, indices, dx, geo, cb):
    """dx: each dy to its window's first maximum (found as max_pool finds it, or read from a
    non-empty `indices`: pixels that are not in the window receive nothing). Windows are
    visited in descending order so that overlapping contributions add up in the reference's
    order."""
    n, h, w, c = geo[0], geo[1], geo[2], geo[3]
    kh, kw, ho, wo = geo[4], geo[5], geo[6], geo[7]
    sh, sw, dh, dw = geo[8], geo[9], geo[10], geo[11]
    pt, pl = geo[12], geo[14]
    blocks = (c + cb - 1) // cb
    for u in prange(n * blocks):
        img = u // blocks
        c0 = u % blocks * cb
        width = min(cb, c - c0)
        image = img * h * w * c + c0
        best = np.empty(cb, x.dtype)
        found = np.empty(cb, np.int32)
        for p in range(h * w):
            d = dx[image + p * c:image + p * c + width]
            for k in range(width):
                d[k] = 0
        for a in range(ho):
            oh = ho - 1 - a
            r0, r1 = _taps(oh * sh - pt, dh, kh, h)
            for b in range(wo):
                ow = wo - 1 - b
                q0, q1 = _taps(ow * sw - pl, dw, kw, w)
                at = ((img * ho + oh) * wo + ow) * c + c0
                if indices.size > 0:
                    given = indices[at:at + width]
                    for k in range(width):
                        found[k] = given[k]
                else:
                    _find_winners(x, image, c, w, oh, ow, sh, sw, dh, dw, pt, pl, r0, r1, q0, q1, best, found,
                                  width)
                g = dy[at:at + width]
                for i in range(r0, r1):
                    for j in range(q0, q1):
                        p = (oh * sh - pt + i * dh) * w + (ow * sw - pl + j * dw)
                        d = dx[image + p * c:image + p * c + width]
                        for k in range(width):
                            if found[k] == p:
                                d[k] += g[k]


@njit(parallel=True, **_JIT)
def avg_pool(x, y, geo, cb):
    """y = the mean of each window's real (unpadded) elements; 0/0 = NaN for a window of
    padding alone, as the reference."""
    n, h, w, c = geo[0], geo[1], geo[2], geo[3]
    kh, kw, ho, wo = geo[4], geo[5], geo[6], geo[7]
    sh, sw, dh, dw = geo[8], geo[9], geo[10], geo[11]
    pt, pl = geo[12], geo[14]
    blocks = (c + cb - 1) // cb
    for u in prange(n * blocks):
        img = u // blocks
        c0 = u % blocks * cb
        width = min(cb, c - c0)
        count = np.empty(1, x.dtype)
        for oh in range(ho):
            r0, r1 = _taps(oh * sh - pt, dh, kh, h)
            for ow in range(wo):
                q0, q1 = _taps(ow * sw - pl, dw, kw, w)
                at = ((img * ho + oh) * wo + ow) * c + c0
                yo = y[at:at + width]
                for k in range(width):
                    yo[k] = 0
                for i in range(r0, r1):
                    for j in range(q0, q1):
                        p = (oh * sh - pt + i * dh) * w + (ow * sw - pl + j * dw)
                        xs = x[(img * h * w + p) * c + c0:(img * h * w + p) * c + c0 + width]
                        for k in range(width):
                            yo[k] += xs[k]
                count[0] = (r1 - r0) * (q1 - q0)      # in the dtype: divide as the reference does
                cnt = count[0]
                for k in range(width):
                    yo[k] /= cnt


@njit(parallel=True, **_JIT)
def avg_pool_backward(dy, dx, geo, cb):
    """dx: each dy shared equally among its window's real elements; windows in descending
    order (the reference's order of addition)."""
    n, h, w, c = geo[0], geo[1], geo[2], geo[3]
    kh, kw, ho, wo = geo[4], geo[5], geo[6], geo[7]
    sh, sw, dh, dw = geo[8], geo[9], geo[10], geo[11]
    pt, pl = geo[12], geo[14]
    blocks = (c + cb - 1) // cb
    for u in prange(n * blocks):
        img = u // blocks
        c0 = u % blocks * cb
        width = min(cb, c - c0)
        image = img * h * w * c + c0
        share = np.empty(cb, dy.dtype)
        count = np.empty(1, dy.dtype)
        for p in range(h * w):
            d = dx[image + p * c:image + p * c + width]
            for k in range(width):
                d[k] = 0
        for a in range(ho):
            oh = ho - 1 - a
            r0, r1 = _taps(oh * sh - pt, dh, kh, h)
            for b in range(wo):
                ow = wo - 1 - b
                q0, q1 = _taps(ow * sw - pl, dw, kw, w)
                count[0] = (r1 - r0) * (q1 - q0)
                cnt = count[0]
                at = ((img * ho + oh) * wo + ow) * c + c0
                g = dy[at:at + width]
                for k in range(width):
                    share[k] = g[k] / cnt
                for i in range(r0, r1):
                    for j in range(q0, q1):
                        p = (oh * sh - pt + i * dh) * w + (ow * sw - pl + j * dw)
                        d = dx[image + p * c:image + p * c + width]
                        for k in range(width):
                            d[k] += share[k]


# ---- elementwise ----

GRAIN = 1 << 16      # elements per parallel chunk


@njit(parallel=True, **_JIT)
def relu(x, y):
    """y = max(x, 0), NaN staying NaN (and -0 staying -0, as `x < 0 ? 0 : x` in C++)."""
    zero = np.zeros(1, y.dtype)[0]
    chunks = (x.size + GRAIN - 1) // GRAIN
    for q in prange(chunks):
        xs = x[q * GRAIN:(q + 1) * GRAIN]
        ys = y[q * GRAIN:(q + 1) * GRAIN]
        for i in range(xs.size):
            v = xs[i]
            ys[i] = zero if v < 0 else v


@njit(parallel=True, **_JIT)
def relu_backward(dy, y, dx):
    """dx = dy where y > 0, else 0."""
    zero = np.zeros(1, dx.dtype)[0]
    chunks = (dy.size + GRAIN - 1) // GRAIN
    for q in prange(chunks):
        gs = dy[q * GRAIN:(q + 1) * GRAIN]
        ys = y[q * GRAIN:(q + 1) * GRAIN]
        ds = dx[q * GRAIN:(q + 1) * GRAIN]
        for i in range(gs.size):
            ds[i] = gs[i] if ys[i] > 0 else zero


@njit(parallel=True, **_JIT)
def adam_update(p, g, m, v, alpha, beta_1, beta_2, epsilon):
    """One Adam step in place (Keras' form; see zengrad.kernels.adam_update)."""
    one = np.ones(1, p.dtype)[0]
    a, b1, b2, eps = alpha * one, (1.0 - beta_1) * one, (1.0 - beta_2) * one, epsilon * one  # 1 - beta in double
    tiny = np.finfo(p.dtype).tiny  # moments below the smallest normal number are stored as 0
    chunks = (p.size + GRAIN - 1) // GRAIN
    for q in prange(chunks):
        for i in range(q * GRAIN, min((q + 1) * GRAIN, p.size)):
            mi = m[i] + (g[i] - m[i]) * b1
            vi = v[i] + (g[i] * g[i] - v[i]) * b2
            m[i] = mi if abs(mi) >= tiny or mi != mi else 0
            v[i] = vi if abs(vi) >= tiny or vi != vi else 0
            p[i] -= a * m[i] / (np.sqrt(v[i]) + eps)


# ---- softmax cross-entropy (one thread: a batch's rows are few and short) ----

@njit(**_JIT)
def softmax_cross_entropy(z, labels, probs):
    """probs = softmax of each row of z (n, c); -> (sum over rows of log(sum(exp(z - max))) -
    (z[label] - max), each row in z's dtype, summed in float64; False when a label is outside [0, c))."""
    n, c = z.shape
    zero = np.zeros(1, probs.dtype)[0]
    total = 0.0
    for i in range(n):
        label = labels[i]
        if label < 0 or label >= c:
            return total, False
        top = z[i, 0]
        for j in range(1, c):
            v = z[i, j]
            if v > top or v != v:
                top = v
        s = zero
        for j in range(c):
            probs[i, j] = np.exp(z[i, j] - top)
            s += probs[i, j]
        for j in range(c):
            probs[i, j] /= s
        total += np.log(s) - (z[i, label] - top)
    return total, True


@njit(**_JIT)
def softmax_cross_entropy_backward(probs, labels, scale, dz):
    """dz = (probs - onehot(labels)) * scale; False when a label is outside [0, c)."""
    n, c = probs.shape
    zero, one = np.zeros(1, dz.dtype)[0], np.ones(1, dz.dtype)[0]
    for i in range(n):
        label = labels[i]
        if label < 0 or label >= c:
            return False
        for j in range(c):
            dz[i, j] = (probs[i, j] - (one if j == label else zero)) * scale
    return True
