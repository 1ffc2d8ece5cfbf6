"""A dense layer's backward pass (dense_backward), each backend beside the NumPy reference."""
import pytest

from zengrad import bench as B


@pytest.mark.parametrize("case, contender", B.pairs("dense_backward"), ids=str)
def test_dense_backward(run_case, case, contender):
    run_case(case, contender)
