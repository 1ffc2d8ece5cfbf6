"""Optimizers with Keras 3's update rules, in place on each parameter's `.data`.

`opt.step(params)` updates every Tensor whose `.grad` is not None; `opt.zero_grad(params)`
sets the grads to None. State (moments) is kept per parameter object. All updates are
vectorised and write through `out=` into a per-parameter scratch buffer, so a step allocates
no arrays of the parameters' size.

Devices: updates run where each parameter is, with its array module (NumPy or CuPy; Adam's
fused kernel on either). State is made on the parameter's device; when a parameter has moved
(model.to(...)) since the last step, its state is moved after it at the next step, moments
kept. A gradient on another device than its parameter is a TypeError (host gradients are copied).
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np

from .. import _device, kernels
from .._device import array_module

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "get", "KNOWN"]


def _check(owner, name, value, lo=0.0, hi=None, lo_open=False):
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (hi is None or value <= hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}{']' if hi is not None else ')'}"
        raise ValueError(f"{owner}: argument '{name}' must be a number in {rng}, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: subclasses set `_num_slots` (state arrays per parameter) and define
    `_update(p, g, slots, lr)`, or `_update_all(arrays, grads, slots, lr)` to update them all in
    one call. One whose `_update_all` is a kernel that checks every array before it updates any
    sets `_kernel_checks = True`: a step of the same parameters as the last full step then goes
    straight to it (see `_repeat`)."""

    _kernel_checks = False

    def __init__(self, learning_rate, weight_decay=None, name=None):
        self.name = name or type(self).__name__.lower()
        self.learning_rate = learning_rate
        self.weight_decay = None if weight_decay is None else \
            _check(f"{type(self).__name__}()", "weight_decay", weight_decay)
        self.iterations = 0
        self._state: dict[int, tuple] = {}   # id(param) -> (param, slots, device); holding param keeps the id unique
        self._last = None   # (params, their slots) of the last full step, when _repeat may take the next

    @property
    def learning_rate(self):
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = _check(f"{type(self).__name__}()", "learning_rate", value)

    def _slots_for(self, p):
        entry = self._state.get(id(p))
        device = _device.CPU if type(p.data) is np.ndarray else _device.device_of(p.data)
        if entry is None or entry[0] is not p:
            xp = array_module(p.data)
            entry = (p, [xp.zeros_like(p.data) for _ in range(self._num_slots)] + [xp.empty_like(p.data)], device)
            self._state[id(p)] = entry
        elif entry[2] != device:    # the parameter moved: its state follows
            entry = (p, [_device.move(s, device) for s in entry[1]], device)
            self._state[id(p)] = entry
        return entry[1]

    def step(self, params):
        """One update of every parameter in `params` that has a gradient."""
        params = params if type(params) is list else list(params)
        if self._repeat(params):
            self.iterations += 1
            return
        self._last = None
        todo = []
        for p in params:
            g = p.grad
            if g is None:
                continue
            if not (type(g) is np.ndarray and type(p.data) is np.ndarray):
                g = np.asarray(g) if _device.is_host(g) else g
                if not (type(g) is np.ndarray and _device.is_host(p.data)):
                    g = _device.like(g, p.data, f"{type(self).__name__}.step()", "grad", dtype=g.dtype)
            if g.shape != p.data.shape:
                raise ValueError(f"{type(self).__name__}.step(): a parameter of shape {p.data.shape} has a "
                                 f"gradient of shape {g.shape}")
            if g.dtype != p.data.dtype:
                g = g.astype(p.data.dtype)
            todo.append((p, g))
        if not todo:
            return
        lr = self._learning_rate
        slots = [self._slots_for(p) for p, _ in todo]
        if self.weight_decay:
            for (p, _), s in zip(todo, slots):
                # decoupled decay before the update, as Keras: p -= p * wd * lr
                tmp = s[-1]
                array_module(tmp).multiply(p.data, self.weight_decay * lr, out=tmp)
                p.data -= tmp
        self._update_all([p.data for p, _ in todo], [g for _, g in todo], slots, lr)
        self.iterations += 1
        if self._kernel_checks and not self.weight_decay and len(todo) == len(params):
            self._last = (params.copy(), slots)   # a copy: the caller may change its list

    def _repeat(self, params) -> bool:
        """The update of the same parameters as the last full step, each with a gradient, straight
        on the kernel (which checks every array before it updates any). False, with nothing done,
        for anything else: another list, a missing gradient, a gradient of another shape, dtype or
        device, a parameter moved; the full step then handles it (or names what is wrong)."""
        last = self._last
        if last is None or last[0] != params:   # Tensors compare by identity
            return False
        try:
            self._update_all([p.data for p in params], [p.grad for p in params], last[1], self._learning_rate)
        except (TypeError, ValueError):
            return False
        return True

    def _update_all(self, arrays, grads, slots, lr):
        """The step of each parameter array with its gradient and slots (three lists of one
        length); an optimizer whose kernel takes a whole model's parameters in one call does so here."""
        for p, g, s in zip(arrays, grads, slots):
            self._update(p, g, s, lr)

    def zero_grad(self, params):
        for p in params:
            p.grad = None

    def get_config(self):
        return {"name": self.name, "learning_rate": self._learning_rate, "weight_decay": self.weight_decay}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """m = momentum*m - lr*g; p += m (nesterov: p += momentum*m - lr*g); without momentum p -= lr*g."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, name="SGD"):
        super().__init__(learning_rate, weight_decay, name)
        self.momentum = _check("SGD()", "momentum", momentum, 0.0, 1.0)
        self.nesterov = bool(nesterov)
        self._num_slots = 1 if self.momentum else 0

    def _update(self, p, g, slots, lr):
        tmp = slots[-1]
        xp = array_module(tmp)
        xp.multiply(g, lr, out=tmp)
        if not self.momentum:
            p -= tmp
            return
        m = slots[0]
        m *= self.momentum
        m -= tmp
        if self.nesterov:
            p -= tmp
            xp.multiply(m, self.momentum, out=tmp)
            p += tmp
        else:
            p += m

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """m += (g - m)(1 - b1); v += (g² - v)(1 - b2); p -= m * alpha / (sqrt(v) + eps),
    alpha = lr * sqrt(1 - b2^t) / (1 - b1^t) (epsilon outside the root and not bias-corrected, as Keras)."""

    _num_slots = 2
    _kernel_checks = True

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                 name="adam"):
        super().__init__(learning_rate, weight_decay, name)
        owner = f"{type(self).__name__}()"
        self.beta_1 = _check(owner, "beta_1", beta_1, 0.0, 1.0)
        self.beta_2 = _check(owner, "beta_2", beta_2, 0.0, 1.0)
        self.epsilon = _check(owner, "epsilon", epsilon)

    def _update_all(self, arrays, grads, slots, lr):
        """Every parameter in one kernel call (a dozen calls a step cost more than the small ones' updates)."""
        t = self.iterations + 1
        alpha = lr * math.sqrt(1.0 - self.beta_2 ** t) / (1.0 - self.beta_1 ** t)
        kernels.adam_update(arrays, grads, [s[0] for s in slots], [s[1] for s in slots], alpha=alpha,
                            beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}


class AdamW(Adam):
    """Adam with decoupled weight decay: p -= p * weight_decay * lr before each Adam update."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 name="adamw"):
        if weight_decay is None:
            raise ValueError("AdamW(): argument 'weight_decay' must be a non-negative number, got None")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay=weight_decay, name=name)


class RMSprop(Optimizer):
    """v = rho*v + (1 - rho)*g²; step = lr * g / sqrt(v + eps) (centered: v - mean_g² + eps);
    with momentum: m = momentum*m + step, p -= m; else p -= step."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, name="rmsprop"):
        super().__init__(learning_rate, weight_decay, name)
        self.rho = _check("RMSprop()", "rho", rho, 0.0, 1.0)
        self.momentum = _check("RMSprop()", "momentum", momentum, 0.0, 1.0)
        self.epsilon = _check("RMSprop()", "epsilon", epsilon)
        self.centered = bool(centered)
        self._num_slots = 1 + (self.momentum > 0) + self.centered

    def _update(self, p, g, slots, lr):
        v, tmp = slots[0], slots[-1]
        xp = array_module(tmp)
        v *= self.rho
        xp.square(g, out=tmp)
        tmp *= 1.0 - self.rho
        v += tmp
        if self.centered:
            avg = slots[-2]
            avg *= self.rho
            xp.multiply(g, 1.0 - self.rho, out=tmp)
            avg += tmp
            xp.square(avg, out=tmp)
            xp.subtract(v, tmp, out=tmp)
            tmp += self.epsilon
        else:
            xp.add(v, self.epsilon, out=tmp)
        xp.sqrt(tmp, out=tmp)
        xp.divide(g, tmp, out=tmp)
        tmp *= lr
        if self.momentum > 0:
            m = slots[1]
            m *= self.momentum
            m += tmp
            p -= m
        else:
            p -= tmp

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}
KNOWN = sorted(_BY_NAME)


def get(identifier) -> Optimizer:
    """An Optimizer from a name (with Keras' defaults) or an Optimizer object."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {identifier!r}; known: {KNOWN} (or a zengrad.optimizers.Optimizer)")
        return cls()
    raise ValueError(f"optimizer must be one of {KNOWN} or a zengrad.optimizers.Optimizer, got {identifier!r}")
