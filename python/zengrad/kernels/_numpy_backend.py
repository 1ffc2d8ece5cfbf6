"""The "numpy" backend: the reference oracles themselves."""
import types

from . import reference as R

BACKEND = types.SimpleNamespace(
    fast=None,  # no kernels that check their own arguments: every call takes the Python checks
    gemm=R._compute_gemm,
    conv2d=R._compute_conv2d,
    conv2d_backward_data=R._compute_conv2d_backward_data,
    conv2d_backward_weight=R._compute_conv2d_backward_weight,
    max_pool2d=R._compute_max_pool2d,
    max_pool2d_backward=R._compute_max_pool2d_backward,
    avg_pool2d=R._compute_avg_pool2d,
    avg_pool2d_backward=R._compute_avg_pool2d_backward,
    relu=R._compute_relu,
    relu_backward=R._compute_relu_backward,
    dense_backward=R._compute_dense_backward,
    adam_update=R._compute_adam_update,
    softmax_cross_entropy=R._compute_softmax_cross_entropy,
    softmax_cross_entropy_backward=R._compute_softmax_cross_entropy_backward,
)
