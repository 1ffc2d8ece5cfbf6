"""Sequential: a stack of layers with Keras' compile / fit / evaluate / predict.

The training loop knows only layers, losses, optimizers (and metrics/callbacks): a step is
`out = model(x, training=True)`, `loss = loss_fn(y, out)`, `loss.backward()`,
`optimizer.step(model.parameters())`. When the last layer's activation is the one the loss
expects (softmax + a cross-entropy, sigmoid + binary cross-entropy), the loss is computed
from the logits by the fused, stable form, as Keras does.

Devices: `model.to("cuda")` moves every weight; fit/evaluate/predict take NumPy (or
device) arrays and feed each batch on the model's device (see _Batches); predict returns NumPy.
Sync policy on a GPU: a training step never waits for the GPU. The loss and metrics are summed
on the device, and read back (which waits) only when the progress bar redraws (at most every
0.05 s, on a terminal only), when a callback overrides on_train_batch_end, and at the end of
each epoch.
"""
from __future__ import annotations

import os
import secrets
from numbers import Integral, Real

import numpy as np

import zengrad as zg

from .. import _device
from .. import callbacks as callbacks_module
from .. import losses as losses_module
from .. import metrics as metrics_module
from .. import optimizers as optimizers_module
from .. import random as zrandom
from ..layers import Layer
from ..layers._base import assign_weights, fmt_shape, unique_name
from ..layers.core import InputLayer
from ._progbar import Progbar

_FORMAT = "zengrad-weights-v1"


def _positive_int(owner, name, value, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < (0 if allow_zero else 1):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{owner}: argument '{name}' must be a {kind} int, got {value!r}")
    return int(value)


def _array(owner, name, value):
    arr = value.data if isinstance(value, zg.Tensor) else value
    arr = np.asarray(arr) if _device.is_host(arr) else arr
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{owner}: argument '{name}' must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{owner}: argument '{name}' must have a batch axis, got a scalar")
    return arr


def _atomic_save_npz(path, arrays):
    """np.savez to `path` through a temporary file in the same folder and os.replace."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # 0o666 & ~umask, like open()
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class _Batches:
    """(x, y) served as batches on the model's device, x cast to the model's dtype.

    On the CPU, batches are taken from the arrays as given. For a GPU model, host arrays are
    copied to the device once, when together they take at most a quarter of its free memory,
    and batches are gathered there (no copy per step); larger data is copied batch by batch.
    Arrays already on a device must be on the model's."""

    def __init__(self, owner, x, y, dtype, device):
        self.dtype, self.device = dtype, device
        self.order_host = self.order_device = None
        _device.check_input(owner, "x", x, device)
        if y is not None:
            _device.check_input(owner, "y", y, device)
        if device != _device.CPU:
            if _device.is_host(x) and x.dtype.kind == "f" and x.dtype != dtype:
                x = x.astype(dtype)     # before the copy: fewer bytes to move
            host = [a for a in (x, y) if a is not None and _device.is_host(a)]
            if host and sum(a.nbytes for a in host) <= _free_device_memory(device) // 4:
                x = _device.move(x, device)
                y = None if y is None else _device.move(y, device)
        self.x, self.y = x, y
        self.host = [a is not None and _device.is_host(a) for a in (x, y)]

    def start_epoch(self, order=None):
        """Serve the samples in `order` (a host permutation) or, with None, as they come."""
        self.order_host = order
        self.order_device = None
        if order is not None and self.device != _device.CPU and not all(self.host):
            self.order_device = _device.move(order, self.device)   # once per epoch, not per step

    def batch(self, lo, hi):
        """(x, y) of samples lo..hi-1 (in the epoch's order); y is None when there are no targets."""
        if self.device == _device.CPU:
            idx = slice(lo, hi) if self.order_host is None else self.order_host[lo:hi]
            return self.x[idx].astype(self.dtype, copy=False), None if self.y is None else self.y[idx]
        out = []
        for a, host in zip((self.x, self.y), self.host):
            if a is None:
                out.append(None)
            elif host:      # too big to keep on the device: this batch is copied
                idx = slice(lo, hi) if self.order_host is None else self.order_host[lo:hi]
                out.append(_device.move(a[idx], self.device))
            else:
                out.append(a[slice(lo, hi) if self.order_device is None else self.order_device[lo:hi]])
        return out[0].astype(self.dtype, copy=False), out[1]


def _free_device_memory(device) -> int:
    gpu = _device.gpu_module()
    with gpu.cuda.Device(int(device[5:])):
        return int(gpu.cuda.runtime.memGetInfo()[0])


class Sequential:
    """A linear stack of layers: Sequential([Conv2D(...), MaxPooling2D(), ..., Dense(10, "softmax")])."""

    def __init__(self, layers=None, name=None):
        self.name = name or unique_name("sequential")
        self._layers: list[Layer] = []
        self._runs_of_layers = None     # _runs(), worked out once per list of layers
        self._checked_batch = None      # train_on_batch: the shapes and dtypes whose structure was checked
        self._declared_input_shape = None
        self.built = False
        self.optimizer = None
        self.loss = None
        self.compiled_metrics = []
        self.stop_training = False
        self.history = None
        self._device = _device.CPU
        for layer in layers or []:
            self.add(layer)

    def __repr__(self):
        return f"<Sequential name={self.name!r} layers={len(self._layers)} built={self.built}>"

    # ---- structure ----
    @property
    def layers(self):
        return list(self._layers)

    def add(self, layer):
        """Append a layer; the model builds as soon as its input shape is known."""
        if isinstance(layer, InputLayer):
            if self._layers or self._declared_input_shape is not None:
                raise ValueError("Sequential.add(): an Input must come first, before any layer")
            self._declared_input_shape = layer.shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add(): expected a zengrad.layers.Layer, got {type(layer).__name__}")
        if any(layer is existing for existing in self._layers):
            raise ValueError(f"Sequential.add(): layer '{layer.name}' is already in the model")
        if not self._layers and self._declared_input_shape is None:
            self._declared_input_shape = layer._declared_input_shape
        if layer.device != self._device:    # layers take the model's device
            layer.to(self._device)
        self._layers.append(layer)
        self._runs_of_layers = self._checked_batch = None
        self.built = False
        if self._declared_input_shape is not None:
            self.build(self._declared_input_shape)

    def pop(self):
        if not self._layers:
            raise ValueError("Sequential.pop(): the model has no layers")
        layer = self._layers.pop()
        self._runs_of_layers = self._checked_batch = None
        self.built = bool(self._layers) and all(l.built for l in self._layers)
        return layer

    def get_layer(self, name=None, index=None):
        if index is not None:
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name!r}; layers: {[l.name for l in self._layers]}")

    def build(self, input_shape=None):
        """Build every layer for inputs of `input_shape` (batch axis included, may be None)."""
        if input_shape is None:
            input_shape = self._declared_input_shape
        if input_shape is None:
            raise ValueError("Sequential.build(): the input shape is unknown; pass input_shape, give the "
                             "first layer input_shape=..., or call the model on a batch of data")
        if not self._layers:
            raise ValueError("Sequential.build(): the model has no layers")
        shape = (None,) + tuple(input_shape)[1:]
        for layer in self._layers:
            shape = layer.build_from_shape(shape)
        self.built = True
        self._checked_batch = None

    @property
    def input_shape(self):
        if self._layers and self._layers[0].built:
            return self._layers[0].input_shape
        return self._declared_input_shape

    @property
    def output_shape(self):
        if not self.built:
            raise ValueError(f"Sequential '{self.name}' has not been built yet: its output shape is unknown")
        return self._layers[-1].output_shape

    @property
    def dtype(self):
        return self._layers[0].dtype if self._layers else np.dtype(np.float32)

    # ---- device ----
    @property
    def device(self) -> str:
        """"cpu" or "cuda:N": where the weights live and where fit/evaluate/predict compute."""
        return self._device

    def to(self, device):
        """Move every weight to `device` ("cpu", "cuda", "cuda:N") in place (the parameters stay the
        same Tensor objects); layers added later move there too. An optimizer's state follows
        its parameters at its next step. Returns the model."""
        target = _device.resolve("Sequential.to()", device)
        for layer in self._layers:
            layer.to(target)
        self._device = target
        return self

    # ---- weights ----
    def _unique(self, tensors):
        return list(dict.fromkeys(tensors))  # first occurrences, in order (Tensors hash by identity)

    def parameters(self):
        """The trainable Tensors of all layers, in layer order."""
        params = []
        for layer in self._layers:
            params += layer.parameters()
        return self._unique(params)

    @property
    def trainable_weights(self):
        return self.parameters()

    @property
    def non_trainable_weights(self):
        return self._unique(w for layer in self._layers for w in layer.non_trainable_weights)

    @property
    def weights(self):
        return self._unique(w for layer in self._layers for w in layer.weights)

    def get_weights(self):
        """Every weight as a NumPy array (copies, whatever the device)."""
        return [_device.to_numpy(w.data) for w in self.weights]

    def set_weights(self, arrays):
        assign_weights("Sequential.set_weights()", self.weights, arrays)

    def count_params(self):
        return int(sum(w.data.size for w in self.weights))

    # ---- forward ----
    def _require_layers(self, owner):
        if not self._layers:
            raise ValueError(f"Sequential.{owner}: the model has no layers")

    def _forward(self, x, training=False, logits=False):
        if not isinstance(x, zg.Tensor):
            if type(x) is np.ndarray and self._device == _device.CPU:
                # used as it is when of the model's dtype: the model never writes to its input
                x = zg.Tensor(x if x.dtype == self.dtype else x.astype(self.dtype))
            elif _device.is_host(x):
                x = zg.tensor(np.asarray(x, dtype=self.dtype), dtype=self.dtype, device=self._device)
            else:
                _device.check_input("Sequential", "x", x, self._device)
                # a batch already on the device is used as it is, too
                x = zg.Tensor(x if x.dtype == self.dtype else x.astype(self.dtype))
        if not self.built:
            self.build((None,) + tuple(x.shape[1:]))
        *runs, (last, _) = self._runs()
        for layer, following in runs:
            x = layer(x, training=training) if following is None else layer.call_then(x, following, training=training)
        return last.call_pre_activation(x, training=training) if logits else last(x, training=training)

    def _runs(self):
        """The layers as the forward pass runs them: (layer, None) alone, or (layer, following) as
        one op, layer.call_then(x, following), where the layer's output is read by its successor
        only (a ReLU convolution, then max pooling): the same results, less memory traffic. The
        last layer runs alone (the loss may take its logits)."""
        if self._runs_of_layers is None:
            layers, runs, i = self._layers, [], 0
            while i < len(layers):
                layer = layers[i]
                following = layers[i + 1] if i + 2 < len(layers) else None
                if following is not None and layer.fuses_with(following):
                    runs.append((layer, following))
                    i += 2
                else:
                    runs.append((layer, None))
                    i += 1
            self._runs_of_layers = runs
        return self._runs_of_layers

    def __call__(self, x, training=False):
        """The model's output Tensor for inputs x (N, ...). An array of the model's dtype is read in
        place, never written nor copied: change it only after backward() has run."""
        self._require_layers("__call__()")
        return self._forward(x, training=training)

    # ---- summary ----
    def summary(self, print_fn=None):
        """Print each layer's output shape and parameter count, then the totals (as Keras)."""
        if not self.built:
            raise ValueError(f"Sequential '{self.name}' has not been built yet. Build it by calling it on a batch "
                             "of data, with build(input_shape), or by giving the first layer input_shape=...")
        emit = print_fn or print
        rows = [(f"{l.name} ({type(l).__name__})", fmt_shape(l.output_shape), f"{l.count_params():,}")
                for l in self._layers]
        w1 = max([29] + [len(r[0]) + 2 for r in rows])
        w2 = max([26] + [len(r[1]) + 2 for r in rows])
        w3 = max([10] + [len(r[2]) + 1 for r in rows])
        width = 1 + w1 + w2 + w3
        emit(f'Model: "{self.name}"')
        emit("_" * width)
        emit(" " + "Layer (type)".ljust(w1) + "Output Shape".ljust(w2) + "Param #")
        emit("=" * width)
        for name, shape, count in rows:
            emit((" " + name.ljust(w1) + shape.ljust(w2) + count.ljust(w3)).rstrip())
        emit("=" * width)
        trainable = sum(w.data.size for w in self.trainable_weights)
        non_trainable = sum(w.data.size for w in self.non_trainable_weights)
        emit(f"Total params: {trainable + non_trainable:,}")
        emit(f"Trainable params: {trainable:,}")
        emit(f"Non-trainable params: {non_trainable:,}")
        emit("_" * width)

    # ---- training ----
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """optimizer: a name ('adam', 'sgd', 'rmsprop', 'adamw') or an Optimizer; loss: a name
        ('sparse_categorical_crossentropy', 'categorical_crossentropy', 'binary_crossentropy', 'mse')
        or a Loss; metrics: e.g. ['accuracy']."""
        if loss is None:
            raise ValueError(f"Sequential.compile(): argument 'loss' is required; known losses: {losses_module.KNOWN}")
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, metrics_module.Metric)) or callable(metrics):
            metrics = [metrics]
        self.compiled_metrics = [metrics_module.get(m) for m in metrics]

    def _require_compiled(self, owner):
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(f"Sequential.{owner}: the model must be compiled first: call "
                               "model.compile(optimizer=..., loss=..., metrics=...) before fit()/evaluate()")

    def _use_logits(self):
        fused = self.loss.fused_activation
        return fused is not None and getattr(self._layers[-1], "activation_name", None) == fused

    def _loss_and_pred(self, x, y, training):
        """(loss Tensor, predictions: an array on the model's device) for one batch."""
        if self._use_logits():
            logits = self._forward(x, training=training, logits=True)
            if not self.compiled_metrics:
                return self.loss.from_logits_loss(y, logits), None
            loss, pred = self.loss.from_logits_loss_and_activation(y, logits)
            if pred is None:
                with zg.no_grad():
                    pred = self._layers[-1].activation(logits.detach()).data
            return loss, pred
        out = self._forward(x, training=training)
        return self.loss(y, out), out.data

    def _check_data(self, owner, x, y):
        x = _array(owner, "x", x)
        y = _array(owner, "y", y)
        if len(x) != len(y):
            raise ValueError(f"Sequential.{owner}: x and y must have the same number of samples, got "
                             f"{len(x)} and {len(y)}")
        if len(x) == 0:
            raise ValueError(f"Sequential.{owner}: x has no samples")
        if not self.built:
            self.build((None,) + x.shape[1:])
        else:
            self._layers[0].check_input_shape((None,) + x.shape[1:])
        self.loss.check_targets(y, self.output_shape)
        return x, y

    def _logs(self, loss_tracker):
        """The running loss and metrics as floats (on a GPU this waits for the queued steps)."""
        return {"loss": loss_tracker.result(), **{m.name: m.result() for m in self.compiled_metrics}}

    def train_on_batch(self, x, y):
        """One optimisation step on (x, y); returns the batch loss (and metrics, as fit logs)."""
        self._require_compiled("train_on_batch()")
        if self._device == _device.CPU:
            # NumPy arrays of the shapes and dtypes of the last call's keep the structure checked
            # then (while no layer is added, popped or rebuilt); the targets, by the loss, every call
            batch = (x.shape, x.dtype, y.shape, y.dtype) if type(x) is np.ndarray and type(y) is np.ndarray else None
            if batch is None or batch != self._checked_batch:
                x, y = self._check_data("train_on_batch()", x, y)
                _device.check_input("Sequential.train_on_batch()", "x", x, self._device)
                _device.check_input("Sequential.train_on_batch()", "y", y, self._device)
                self._checked_batch = batch
            else:
                self.loss.check_targets(y, self.output_shape)
            xb, yb = x.astype(self.dtype, copy=False), y
        else:
            x, y = self._check_data("train_on_batch()", x, y)
            batches = _Batches("Sequential.train_on_batch()", x, y, self.dtype, self._device)
            batches.start_epoch()
            xb, yb = batches.batch(0, len(x))
        loss, pred = self._train_step(xb, yb)
        loss = float(loss)
        if not self.compiled_metrics:
            return loss
        values = [loss]
        for m in self.compiled_metrics:
            m.reset_state()
            m.update_state(yb, pred)
            values.append(m.result())
        return values

    def _train_step(self, xb, yb):
        """One step on a batch already on the model's device; (loss as a 0-d array on that
        device, predictions). Nothing here waits for a GPU."""
        params = self.parameters()
        self.optimizer.zero_grad(params)
        loss, pred = self._loss_and_pred(xb, yb, training=True)
        loss.backward()
        self.optimizer.step(params)
        return loss.data, pred

    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0):
        """Train for `epochs` passes over (x, y) in batches; returns a History whose .history holds
        'loss', the metrics, and 'val_loss'/'val_<metric>' with validation data."""
        self._require_layers("fit()")
        self._require_compiled("fit()")
        batch_size = 32 if batch_size is None else _positive_int("Sequential.fit()", "batch_size", batch_size)
        epochs = _positive_int("Sequential.fit()", "epochs", epochs, allow_zero=True)
        initial_epoch = _positive_int("Sequential.fit()", "initial_epoch", initial_epoch, allow_zero=True)
        verbose = 1 if verbose == "auto" else verbose
        if verbose not in (0, 1, 2):
            raise ValueError(f"Sequential.fit(): argument 'verbose' must be 0, 1, 2 or 'auto', got {verbose!r}")
        x, y = self._check_data("fit()", x, y)
        if validation_data is None and validation_split:
            if not isinstance(validation_split, Real) or not 0 < validation_split < 1:
                raise ValueError(f"Sequential.fit(): argument 'validation_split' must be in [0, 1), got "
                                 f"{validation_split!r}")
            split = int(len(x) * (1 - validation_split))
            if split == 0 or split == len(x):
                raise ValueError(f"Sequential.fit(): validation_split={validation_split} leaves no training or no "
                                 f"validation samples out of {len(x)}")
            x, y, validation_data = x[:split], y[:split], (x[split:], y[split:])
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("Sequential.fit(): argument 'validation_data' must be a tuple (x_val, y_val)")
            x_val, y_val = self._check_data("fit() validation_data", *validation_data)
            val_batches = _Batches("Sequential.fit() validation_data", x_val, y_val, self.dtype, self._device)
        batches = _Batches("Sequential.fit()", x, y, self.dtype, self._device)

        n = len(x)
        steps = -(-n // batch_size)
        history = callbacks_module.History()
        cbs = callbacks_module.CallbackList(list(callbacks or []) + [history], self,
                                            {"epochs": epochs, "steps": steps, "verbose": verbose})
        self.stop_training = False
        self.history = history
        loss_tracker = metrics_module.Mean("loss")
        logs = {}
        batch_logs = cbs.reads_batch_logs()     # else the running values are read only to draw the bar
        cbs.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            cbs.on_epoch_begin(epoch)
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}")
            bar = Progbar(steps, verbose=verbose)
            batches.start_epoch(zrandom.generator().permutation(n) if shuffle else None)
            loss_tracker.reset_state()
            for m in self.compiled_metrics:
                m.reset_state()
            for step in range(steps):
                lo, hi = step * batch_size, min((step + 1) * batch_size, n)
                xb, yb = batches.batch(lo, hi)
                cbs.on_train_batch_begin(step)
                loss, pred = self._train_step(xb, yb)
                loss_tracker.update_state(loss, sample_weight=hi - lo)
                for m in self.compiled_metrics:
                    m.update_state(yb, pred)
                draw = bar.due()
                if batch_logs or draw:
                    logs = self._logs(loss_tracker)
                cbs.on_train_batch_end(step, logs)
                if draw:
                    bar.update(step + 1, logs)
                if self.stop_training:
                    break
            logs = self._logs(loss_tracker)
            if validation_data is not None:
                val = self._evaluate_batches(val_batches, len(x_val), batch_size)
                logs.update({f"val_{k}": v for k, v in val.items()})
            bar.update(step + 1, logs, finalize=True)
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        return history

    def _evaluate_batches(self, batches, n, batch_size, bar=None):
        loss_tracker = metrics_module.Mean("loss")
        for m in self.compiled_metrics:
            m.reset_state()
        batches.start_epoch()
        with zg.no_grad():
            for step, lo in enumerate(range(0, n, batch_size)):
                hi = min(lo + batch_size, n)
                xb, yb = batches.batch(lo, hi)
                loss, pred = self._loss_and_pred(xb, yb, training=False)
                loss_tracker.update_state(loss.data, sample_weight=hi - lo)
                for m in self.compiled_metrics:
                    m.update_state(yb, pred)
                if bar is not None and (hi == n or bar.due()):
                    bar.update(step + 1, self._logs(loss_tracker), finalize=hi == n)
        return self._logs(loss_tracker)

    def evaluate(self, x=None, y=None, batch_size=32, verbose=1, return_dict=False):
        """Loss (and metrics) over (x, y) in inference mode: [loss, accuracy], or the loss alone
        when there are no metrics; a dict with return_dict=True."""
        self._require_layers("evaluate()")
        self._require_compiled("evaluate()")
        batch_size = 32 if batch_size is None else _positive_int("Sequential.evaluate()", "batch_size", batch_size)
        verbose = 1 if verbose == "auto" else verbose
        x, y = self._check_data("evaluate()", x, y)
        bar = Progbar(-(-len(x) // batch_size), verbose=verbose) if verbose else None
        batches = _Batches("Sequential.evaluate()", x, y, self.dtype, self._device)
        logs = self._evaluate_batches(batches, len(x), batch_size, bar)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=32, verbose=0):
        """The model's outputs for x, computed in batches in inference mode, as one NumPy array."""
        self._require_layers("predict()")
        batch_size = 32 if batch_size is None else _positive_int("Sequential.predict()", "batch_size", batch_size)
        x = _array("Sequential.predict()", "x", x)
        if not self.built:
            self.build((None,) + x.shape[1:])
        self._layers[0].check_input_shape((None,) + x.shape[1:])
        steps = -(-len(x) // batch_size)
        bar = Progbar(steps, verbose=verbose) if verbose else None
        batches = _Batches("Sequential.predict()", x, None, self.dtype, self._device)
        batches.start_epoch()
        outputs = []
        on_cpu = self._device == _device.CPU
        with zg.no_grad():
            for step, lo in enumerate(range(0, len(x), batch_size)):
                xb, _ = batches.batch(lo, min(lo + batch_size, len(x)))
                out = self._forward(xb, training=False)
                outputs.append(np.array(out.data, copy=True) if on_cpu else out.data)
                if bar is not None:
                    bar.update(step + 1, {}, finalize=step + 1 == steps)
        if not outputs:
            return np.zeros((0,) + tuple(self.output_shape[1:]), dtype=self.dtype)
        if on_cpu:
            return np.concatenate(outputs, axis=0)
        # gathered on the device and copied back once: one wait for the GPU, not one per batch
        return _device.to_host(_device.array_module(outputs[0]).concatenate(outputs, axis=0))

    # ---- saving ----
    def _named_weights(self):
        """[(key, layer index, layer, weight name, Tensor)] in save order."""
        return [(f"layers.{i}.{wname}", i, layer, wname, t)
                for i, layer in enumerate(self._layers) for wname, t in layer.named_weights()]

    def save_weights(self, filepath):
        """Write every weight (trainable or not) to a NumPy .npz file, atomically."""
        if not self.built:
            raise ValueError(f"Sequential.save_weights(): model '{self.name}' has not been built yet; call it on "
                             "data or give the first layer input_shape=...")
        arrays = {key: _device.to_host(t.data) for key, _, _, _, t in self._named_weights()}
        arrays["__format__"] = np.array(_FORMAT)
        arrays["__layers__"] = np.array([f"{l.name} ({type(l).__name__})" for l in self._layers])
        _atomic_save_npz(filepath, arrays)

    def load_weights(self, filepath):
        """Read weights written by save_weights into this (built) model; refuses a file whose
        layers or shapes differ, naming the layer, and changes nothing then."""
        if not self.built:
            raise ValueError(f"Sequential.load_weights(): build model '{self.name}' first (call it on data or give "
                             "the first layer input_shape=...) so that its weights exist")
        filepath = os.fspath(filepath)
        with np.load(filepath, allow_pickle=False) as f:
            if "__format__" not in f.files or str(f["__format__"]) != _FORMAT:
                raise ValueError(f"load_weights(): {filepath} is not a zengrad weights file")
            stored = {k: f[k] for k in f.files if not k.startswith("__")}
            saved_layers = [str(s) for s in f["__layers__"]]
        expected = self._named_weights()
        for key, i, layer, wname, t in expected:
            where = f"layer {i} '{layer.name}' ({type(layer).__name__})"
            saved_as = f" (saved from {saved_layers[i]})" if i < len(saved_layers) else ""
            if key not in stored:
                raise ValueError(f"load_weights(): {filepath} has no weight '{wname}' for {where}{saved_as}")
            if stored[key].shape != t.data.shape:
                raise ValueError(f"load_weights(): weight '{wname}' of {where} has shape {t.data.shape} in the "
                                 f"model but {stored[key].shape} in {filepath}{saved_as}")
        extra = sorted(set(stored) - {key for key, *_ in expected})
        if extra:
            i = int(extra[0].split(".")[1])
            owner = f"layer {i} '{self._layers[i].name}'" if i < len(self._layers) else f"layer {i}"
            saved_as = f" (saved from {saved_layers[i]})" if i < len(saved_layers) else ""
            raise ValueError(f"load_weights(): {filepath} holds weights the model does not have: {extra[0]} for "
                             f"{owner}{saved_as}; the model has {len(self._layers)} layers")
        for key, _, _, _, t in expected:
            t.data[...] = _device.like(stored[key], t.data, "load_weights()", key)
