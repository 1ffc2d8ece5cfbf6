"""Keras-style layers (NHWC activations, HWIO/(in, out) kernels, Keras names and defaults).

A layer builds its weights from the first input's shape (or from `input_shape=`), exposes its
trainable Tensors through `parameters()`, and is called as `layer(x, training=False)`.
"""
from ._base import Layer
from .convolutional import Conv2D
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer
from .normalization import BatchNormalization
from .pooling import AveragePooling2D, AvgPool2D, MaxPool2D, MaxPooling2D

__all__ = ["Layer", "Dense", "Conv2D", "MaxPooling2D", "AveragePooling2D", "MaxPool2D", "AvgPool2D",
           "Flatten", "Dropout", "BatchNormalization", "Activation", "Input", "InputLayer"]
