"""Arrays made by the compiled CPU kernels start on a 64-byte boundary (zengrad._cpu.empty), own
their data like any NumPy array, and leave the allocation of every other array alone."""
import pickle

import numpy as np
import pytest

import zengrad as zg

_cpu = pytest.importorskip("zengrad._cpu", reason="the compiled backend is not built here")


def address(a):
    return a.__array_interface__["data"][0]


@pytest.mark.parametrize("shape", [(), (0,), (1,), (3, 5), (2, 0, 4), (32, 26, 26, 32), 7])
@pytest.mark.parametrize("dtype", [np.float32, "float64", np.int32, np.uint8])
def test_empty_is_aligned_and_owns_its_data(shape, dtype):
    a = _cpu.empty(shape, dtype)
    assert a.shape == (shape if isinstance(shape, tuple) else (shape,)) and a.dtype == np.dtype(dtype)
    assert a.flags.c_contiguous and a.flags.owndata and a.flags.writeable and a.base is None
    assert address(a) % 64 == 0
    a.fill(3)
    assert (pickle.loads(pickle.dumps(a)) == a).all()


def test_empty_grows_and_shrinks_in_place_keeping_the_data():
    a = _cpu.empty(10, np.float64)
    a[:] = np.arange(10)
    a.resize(100_000, refcheck=False)        # NumPy reallocates through the same allocator
    np.testing.assert_array_equal(a[:10], np.arange(10))
    a.resize(3, refcheck=False)
    np.testing.assert_array_equal(a, [0, 1, 2])


def test_empty_refuses_bad_arguments():
    with pytest.raises(ValueError, match="negative"):
        _cpu.empty((-1, 2), np.float32)
    with pytest.raises(TypeError):
        _cpu.empty((2,), "no such type")


def test_kernel_outputs_are_aligned_and_other_arrays_untouched():
    rng = np.random.default_rng(0)
    x, w = rng.random((2, 9, 9, 3), np.float32), rng.random((3, 3, 3, 16), np.float32)
    with zg.kernels.use_backend("cpp"):
        y = zg.kernels.conv2d(x, w)
        pooled, winners = zg.kernels.max_pool2d(y, 2, return_indices=True)
        outputs = [y, zg.kernels.gemm(x.reshape(18, -1), x.reshape(18, -1), trans_b=True),
                   zg.kernels.conv2d_backward_data(y, w, x.shape),
                   *zg.kernels.conv2d_backward_weight(x, y, w.shape, with_bias=True), pooled, winners,
                   zg.kernels.max_pool2d_backward(pooled, y, 2, indices=winners), zg.kernels.avg_pool2d(y, 2),
                   zg.kernels.avg_pool2d_backward(pooled, y, 2), zg.kernels.relu(x), zg.kernels.relu_backward(y, y)]
    for out in outputs:
        assert address(out) % 64 == 0 and out.base is None
    # NumPy's own allocations are not redirected: across sizes, some land off a 64-byte boundary.
    assert any(address(np.empty(n, np.float32)) % 64 for n in range(100, 200))


def misaligned_copy(a, offset_bytes=16):
    """A C-contiguous copy of `a` whose data start `offset_bytes` past a 64-byte boundary."""
    raw = _cpu.empty(a.nbytes + 64, np.uint8)
    b = raw[offset_bytes:offset_bytes + a.nbytes].view(a.dtype).reshape(a.shape)
    b[...] = a
    return b


@pytest.mark.parametrize("x_shape, w_shape, padding", [((4, 12, 12, 1), (3, 3, 1, 32), "valid"),   # direct
                                                       ((3, 9, 9, 16), (3, 3, 16, 64), "same")])  # in place
@pytest.mark.parametrize("offset", [4, 16, 32])
def test_backward_weight_gives_the_same_bits_at_any_alignment(x_shape, w_shape, padding, offset):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(np.float32)
    dy = rng.standard_normal(zg.kernels.reference.conv2d(x, np.zeros(w_shape, np.float32), padding=padding).shape)
    aligned = _cpu.empty(dy.shape, np.float32)
    aligned[...] = dy
    shifted = misaligned_copy(aligned, offset)
    assert address(aligned) % 64 == 0 and address(shifted) % 64 == offset
    with zg.kernels.use_backend("cpp"):
        got = [zg.kernels.conv2d_backward_weight(x, d, w_shape, padding=padding, with_bias=True)
               for d in (aligned, shifted)]
    np.testing.assert_array_equal(got[0][0], got[1][0])
    np.testing.assert_array_equal(got[0][1], got[1][1])
