"""GEMM (and numpy.matmul), each backend beside the NumPy reference."""
import pytest

from zengrad import bench as B


@pytest.mark.parametrize("case, contender", B.pairs("gemm"), ids=str)
def test_gemm(run_case, case, contender):
    run_case(case, contender)
