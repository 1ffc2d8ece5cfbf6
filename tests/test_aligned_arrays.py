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
        outputs = [y, zg.kernels.gemm(x.reshape(18, -1), x.reshape(18, -1), trans_b=True),
                   zg.kernels.conv2d_backward_data(y, w, x.shape), zg.kernels.conv2d_backward_weight(x, y, w.shape),
                   *zg.kernels.max_pool2d(x, 2, return_indices=True), zg.kernels.relu_backward(y, y)]
    for out in outputs:
        assert address(out) % 64 == 0 and out.base is None
    # NumPy's own allocations are not redirected: across sizes, some land off a 64-byte boundary.
    assert any(address(np.empty(n, np.float32)) % 64 for n in range(100, 200))
