"""Max and average pooling, forward and backward, each backend beside the NumPy reference."""
import pytest

from zengrad import bench as B


@pytest.mark.parametrize("case, contender", B.pairs("pool2d"), ids=str)
def test_pool2d(run_case, case, contender):
    run_case(case, contender)
