"""Convolution forward, backward-data and backward-weight, each backend beside the NumPy reference."""
import pytest

from zengrad import bench as B


@pytest.mark.parametrize("case, contender", B.pairs("conv2d"), ids=str)
def test_conv2d(run_case, case, contender):
    run_case(case, contender)
