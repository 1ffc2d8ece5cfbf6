"""MaxPooling2D and AveragePooling2D (NHWC)."""
from __future__ import annotations

from .. import functional as F
from ._base import Layer, int_pair, padding_mode
from .convolutional import conv_output_size


class _Pooling2D(Layer):
    input_ndim = 4
    input_ndim_hint = "(batch, height, width, channels)"
    _op = None

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        cls = type(self).__name__
        if data_format not in (None, "channels_last"):
            raise ValueError(f"{cls}(): argument 'data_format' must be 'channels_last' (NHWC), got {data_format!r}")
        super().__init__(**kwargs)
        self.pool_size = int_pair(f"{cls}()", "pool_size", pool_size)
        self.strides = self.pool_size if strides is None else int_pair(f"{cls}()", "strides", strides)
        self.padding = padding_mode(f"{cls}()", padding)

    def _spatial(self, input_shape):
        return tuple(conv_output_size(input_shape[1 + i], self.pool_size[i], self.strides[i], 1, self.padding)
                     for i in range(2))

    def check_input_shape(self, shape):
        super().check_input_shape(shape)
        if any(d is not None and d <= 0 for d in self._spatial(tuple(shape))):
            raise self._incompatible(shape, f"a {self.pool_size[0]}x{self.pool_size[1]} window with "
                                            f"padding='valid' does not fit in {shape[1]}x{shape[2]}")

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._spatial(input_shape) + (input_shape[3],)

    def call(self, x, training=False):
        return type(self)._op(x, pool_size=self.pool_size, stride=self.strides, padding=self.padding)


class MaxPooling2D(_Pooling2D):
    """Max over pool_size windows: (N, H, W, C) -> (N, Ho, Wo, C)."""
    _op = staticmethod(F.max_pool2d)


class AveragePooling2D(_Pooling2D):
    """Mean over pool_size windows: (N, H, W, C) -> (N, Ho, Wo, C)."""
    _op = staticmethod(F.avg_pool2d)


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
