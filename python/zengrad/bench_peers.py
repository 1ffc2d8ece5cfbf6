"""Peers: the same work done by another library, timed side by side (`bench --peers torch`).

PyTorch (CPU, channels_last, its own oneDNN kernels) is optional and never a dependency: a
peer that is not installed is reported and left out. Inputs are shared with PyTorch without
copies: an NHWC array seen through `permute(0, 3, 1, 2)` is a channels_last NCHW tensor.
"""
from __future__ import annotations

import importlib.util
import time

import numpy as np

TORCH = "torch"
KNOWN = (TORCH,)


def available(name: str) -> bool:
    return name == TORCH and importlib.util.find_spec("torch") is not None


def _torch():
    import torch

    import zengrad as zg
    torch.set_num_threads(zg.get_num_threads())
    return torch


def _nchw(torch, a):
    """An NHWC array as a channels_last NCHW tensor, sharing memory."""
    return torch.from_numpy(a).permute(0, 3, 1, 2)


def _oihw(torch, w):
    """An HWIO filter as PyTorch's OIHW (copied once, outside the timing)."""
    return torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))


def _int_padding(padding, w_shape):
    """PyTorch's gradient helpers take numbers: 'valid' is 0, 'same' (odd, stride 1) is k // 2."""
    return (0, 0) if padding == "valid" else (w_shape[0] // 2, w_shape[1] // 2)


def kernel_call(kernel: str, args: tuple, kwargs: dict):
    """(call, to_host) doing `kernel` on `args` with PyTorch; None when PyTorch has no such case."""
    torch = _torch()
    grad = torch.nn.grad
    padding = kwargs.get("padding", "valid")
    if kernel == "gemm":
        a, b = (torch.from_numpy(v) for v in args[:2])
        a = a.T if kwargs.get("trans_a") else a
        b = b.T if kwargs.get("trans_b") else b
        return (lambda: torch.mm(a, b)), (lambda t: t.numpy())
    if kernel == "dense_backward":
        dy, x, w = (torch.from_numpy(v) for v in args[:3])
        with_bias = kwargs.get("with_bias", False)
        return ((lambda: (dy @ w.T, x.T @ dy, dy.sum(0) if with_bias else None)),
                (lambda t: tuple(None if v is None else v.numpy() for v in t)))
    nhwc = (lambda t: t.permute(0, 2, 3, 1).numpy())
    if kernel == "conv2d":
        x, w = _nchw(torch, args[0]), _oihw(torch, args[1])
        return (lambda: torch.nn.functional.conv2d(x, w, padding=padding)), nhwc
    if kernel == "conv2d_backward_data":
        dy, w, x_shape = _nchw(torch, args[0]), _oihw(torch, args[1]), args[2]
        size = (x_shape[0], x_shape[3], x_shape[1], x_shape[2])
        pad = _int_padding(padding, args[1].shape)
        return (lambda: grad.conv2d_input(size, w, dy, padding=pad)), nhwc
    if kernel == "conv2d_backward_weight":
        x, dy, w_shape = _nchw(torch, args[0]), _nchw(torch, args[1]), args[2]
        size = (w_shape[3], w_shape[2], w_shape[0], w_shape[1])
        pad = _int_padding(padding, w_shape)
        return (lambda: grad.conv2d_weight(x, size, dy, padding=pad)), (lambda t: t.permute(2, 3, 1, 0).numpy())
    return None


def seed_cnn_step(batch: int = 32, seed: int = 0):
    """A training step of the seed CNN in PyTorch (channels_last, Adam as Keras sets it up)."""
    torch = _torch()
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(1600, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10),
    ).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, y):
        optimizer.zero_grad()
        loss = loss_fn(model(_nchw(torch, x)), torch.from_numpy(y))
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def seed_step_ms(repeats: int = 50, batch: int = 32) -> float:
    rng = np.random.default_rng(0)
    x = rng.random((batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    step = seed_cnn_step(batch)
    step(x, y)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(x, y)
        samples.append(time.perf_counter() - start)
    return 1e3 * float(np.median(samples))


def seed_epoch_s(x: np.ndarray, y: np.ndarray, batch: int = 32) -> float:
    """One shuffled epoch over (x, y) (NHWC float32 images, int64 labels)."""
    step = seed_cnn_step(batch)
    order = np.random.default_rng(0).permutation(len(x))
    start = time.perf_counter()
    for lo in range(0, len(x), batch):
        idx = order[lo:lo + batch]
        step(x[idx], y[idx])
    return time.perf_counter() - start
