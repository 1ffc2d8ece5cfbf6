"""Conv2D (NHWC inputs, HWIO kernel, as Keras)."""
from __future__ import annotations

from numbers import Integral

from .. import functional as F
from ._base import ActivationMixin, Layer, int_pair, padding_mode


def conv_output_size(size, window, stride, dilation, padding):
    if size is None:
        return None
    if padding == "same":
        return -(-size // stride)
    return (size - dilation * (window - 1) - 1) // stride + 1


class Conv2D(ActivationMixin, Layer):
    """2-D convolution: x (N, H, W, C), kernel (kh, kw, C, filters) -> (N, Ho, Wo, filters)."""

    input_ndim = 4
    input_ndim_hint = "(batch, height, width, channels)"

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", input_shape=None, **kwargs):
        if isinstance(filters, bool) or not isinstance(filters, Integral) or filters <= 0:
            raise ValueError(f"Conv2D(): argument 'filters' must be a positive int, got {filters!r}")
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Conv2D(): argument 'data_format' must be 'channels_last' (NHWC), got {data_format!r}")
        super().__init__(input_shape=input_shape, **kwargs)
        self.filters = int(filters)
        self.kernel_size = int_pair("Conv2D()", "kernel_size", kernel_size)
        self.strides = int_pair("Conv2D()", "strides", strides)
        self.dilation_rate = int_pair("Conv2D()", "dilation_rate", dilation_rate)
        self.padding = padding_mode("Conv2D()", padding)
        if self.strides != (1, 1) and self.dilation_rate != (1, 1):
            raise ValueError("Conv2D(): strides > 1 together with dilation_rate > 1 is not supported (as Keras)")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self._set_activation(activation)
        self.kernel = self.bias = None

    def _spatial(self, input_shape):
        return tuple(conv_output_size(input_shape[1 + i], self.kernel_size[i], self.strides[i],
                                      self.dilation_rate[i], self.padding) for i in range(2))

    def check_input_shape(self, shape):
        super().check_input_shape(shape)
        if any(d is not None and d <= 0 for d in self._spatial(tuple(shape))):
            raise self._incompatible(shape, f"a {self.kernel_size[0]}x{self.kernel_size[1]} kernel "
                                            f"(dilation {self.dilation_rate}) with padding='valid' does not fit "
                                            f"in {shape[1]}x{shape[2]}")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise self._incompatible(input_shape, "the channel axis must be known")
        self.kernel = self.add_weight("kernel", self.kernel_size + (channels, self.filters), self.kernel_initializer)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer)
        self._fixed_axes = {-1: channels}

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._spatial(input_shape) + (self.filters,)

    def pre_activation(self, x, training=False):
        return F.conv2d(x, self.kernel, self.bias, stride=self.strides, padding=self.padding,
                        dilation=self.dilation_rate)

    def fuses_with(self, following) -> bool:
        """A ReLU convolution runs with a max pooling after it as one op."""
        from .pooling import MaxPooling2D
        return self.activation_name == "relu" and type(following) is MaxPooling2D

    def call_then(self, x, following, training=False):
        """following(self(x)), where nothing else reads this layer's output (inside a Sequential):
        a ReLU convolution then max pooling as one op (F.conv2d_relu_max_pool2d)."""
        following._check_call(self._check_call(x.shape))
        return F.conv2d_relu_max_pool2d(x, self.kernel, self.bias, stride=self.strides, padding=self.padding,
                                        dilation=self.dilation_rate, pool_size=following.pool_size,
                                        pool_stride=following.strides, pool_padding=following.padding)

    def call(self, x, training=False):
        if self.activation_name == "relu":  # fused into the convolution kernel
            return F.conv2d(x, self.kernel, self.bias, stride=self.strides, padding=self.padding,
                            dilation=self.dilation_rate, activation="relu")
        return super().call(x, training=training)
