"""Training benchmarks of the seed CNN: `seed-step`, `seed-epoch`, and where a step's time goes.

seed-step   one training step at batch 32 (forward, loss, backward, Adam), per backend;
seed-epoch  one epoch over the 60,000 Fashion-MNIST training images at batch 32 (needs the
            full data set: see zengrad.datasets), per backend;
layers      one step taken apart: each layer's forward and backward, the loss, the optimizer,
            and what is left (Python and the graph), so that performance work knows where to look;
            and, on the cpp backend, the time of a step spent outside the compiled kernels.

On a GPU (`devices` with "cuda"): seed-step is the time per step of steps queued back to back
(the batch already on the device, one synchronisation per sample of steps), as in fit, which
never waits for the GPU within an epoch; seed-epoch is a whole `fit` on the GPU model, the copy
of the data to the device included. When the CPU epoch was measured in the same run, the GPU's
speed-up over it is printed. The layer split is for the CPU only.
"""
from __future__ import annotations

import statistics
import time
import types

import numpy as np

import zengrad as zg
from zengrad import _device, kernels
from zengrad import functional as F

BATCH = 32


def _model_and_batch(seed: int = 0, device: str = "cpu"):
    from zengrad.demo import seed_cnn

    zg.manual_seed(seed)
    model = seed_cnn().to(device)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    x = rng.random((BATCH, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, BATCH)
    return model, x, y


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: builds, allocates, fills caches
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return 1e3 * statistics.median(samples)


def _queued_ms(step, sync, repeats: int, per_sample: int = 10) -> float:
    """Median milliseconds per step of `per_sample` steps queued back to back, then one sync."""
    step()
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(per_sample):
            step()
        sync()
        samples.append((time.perf_counter() - start) / per_sample)
    return 1e3 * statistics.median(samples)


def seed_step_ms(backend: str, repeats: int = 50, device: str = "cpu") -> float:
    """Median milliseconds of one full training step of the seed CNN on `backend` (on `device`)."""
    with kernels.use_backend(backend):
        model, x, y = _model_and_batch(device=device)
        if device == "cpu":
            return _median_ms(lambda: model.train_on_batch(x, y), repeats)
        xb, yb = _device.move(x, device), _device.move(y, device)
        return _queued_ms(lambda: model._train_step(xb, yb), lambda: _device.synchronize(device), repeats)


def seed_epoch_s(backend: str, device: str = "cpu") -> float | None:
    """Seconds for one epoch over the full Fashion-MNIST training set; None without the data."""
    data = _full_data()
    if data is None:
        return None
    x, y = data
    with kernels.use_backend(backend):
        model, _, _ = _model_and_batch(device=device)
        start = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0)   # ends reading the loss: the GPU is done
        return time.perf_counter() - start


def layer_split(repeats: int = 30) -> list[tuple[str, float, float]]:
    """[(part, forward ms, backward ms)] for one step on the current backend.

    Each layer (or pair that a step runs as one op) is timed alone on the activations it sees in
    a real step; its input requires a gradient except for the first layer's (the images), as in
    training."""
    model, x, y = _model_and_batch()
    rows, activation = [], x
    for i, (layer, following) in enumerate(model._runs()):   # as a step runs them, fused pairs as one part
        inp = zg.Tensor(activation, requires_grad=i > 0)  # no copy: a step passes activations as they are
        params = layer.parameters() + ([] if following is None else following.parameters())

        def forward(inp=inp, layer=layer, following=following, params=params):
            for t in [inp] + params:  # as zero_grad in a step: gradients are new, not added to old ones
                t.grad = None
            if following is not None:
                return layer.call_then(inp, following, training=True)
            return layer(inp, training=True)

        out = forward()
        g = np.random.default_rng(i).standard_normal(out.shape).astype(out.dtype)
        fwd = _median_ms(forward, repeats)
        bwd = _median_ms(lambda: forward().backward(g), repeats) - fwd
        name = f"{layer.name} ({type(layer).__name__})"
        if following is not None:
            name = f"{layer.name} + {following.name} (fused)"
        rows.append((name, fwd, max(bwd, 0.0)))
        activation = out.data

    logits = zg.tensor(activation, requires_grad=True)
    loss_fwd = _median_ms(lambda: F.cross_entropy(logits, y), repeats)
    loss_bwd = _median_ms(lambda: F.cross_entropy(logits, y).backward(), repeats) - loss_fwd
    rows.append(("loss (cross_entropy)", loss_fwd, max(loss_bwd, 0.0)))

    params = model.parameters()
    for p in params:
        p.grad = np.zeros_like(p.data)
    rows.append(("optimizer (Adam)", _median_ms(lambda: model.optimizer.step(params), repeats), 0.0))
    return rows


def outside_kernels(repeats: int = 300) -> tuple[float, float]:
    """(ms per step, ms of it outside the compiled kernels) for training steps on the "cpp"
    backend: every call into zengrad._cpu is timed, its argument checks and the allocation of its
    outputs included; the rest is Python and NumPy calls (and about half a microsecond of timing
    per kernel call)."""
    from zengrad.kernels import _cpp_backend as cpp

    real, inside = cpp._cpu, [0.0]

    def timed(fn):
        def call(*args):
            start = time.perf_counter()
            try:
                return fn(*args)
            finally:
                inside[0] += time.perf_counter() - start
        return call

    names = [n for n in dir(real) if not n.startswith("_") and callable(getattr(real, n))]
    proxy = types.SimpleNamespace(**{n: timed(getattr(real, n)) for n in names})
    with kernels.use_backend("cpp"):
        model, x, y = _model_and_batch()
        for _ in range(20):
            model.train_on_batch(x, y)
        cpp._cpu = cpp.BACKEND.fast = proxy
        try:
            start = time.perf_counter()
            for _ in range(repeats):
                model.train_on_batch(x, y)
            total = time.perf_counter() - start
        finally:
            cpp._cpu = cpp.BACKEND.fast = real
    return 1e3 * total / repeats, 1e3 * (total - inside[0]) / repeats


def _full_data():
    """The full Fashion-MNIST training set as the seed CNN takes it, or None when not found."""
    try:
        (x, y), _ = zg.datasets.fashion_mnist.load_data()
    except OSError:
        return None
    return x.reshape(-1, 28, 28, 1) * np.float32(1 / 255), y.astype(np.int64)


def run(backends, *, quick: bool = False, peers=(), devices=("cpu",)) -> None:
    """Print seed-step (and, unless quick, seed-epoch) per backend and peer on each device, and
    the layer split of a CPU step."""
    from zengrad import bench_peers
    from zengrad.bench import backends_of

    print("\nseed CNN training, batch 32")
    repeats = 20 if quick else 50
    data = None if quick else _full_data()
    epochs: dict[tuple[str, str], float] = {}
    steps = {}
    for device in devices:
        where = _device.resolve("bench", device)    # "cuda" -> the current GPU, "cuda:N"
        on = {b: where for b in backends_of(device, backends)}
        for b in on:
            steps[b] = seed_step_ms(b, repeats=repeats, device=where)
            label = f"{b} ({where})" if device == "cuda" else b
            ms = steps[b]
            print(f"  seed-step   {label:8} {ms:8.2f} ms per step ({1875 * ms / 1e3:6.1f} s per 60,000 images)")
        if device == "cpu":
            for p in peers:
                ms = bench_peers.seed_step_ms(repeats=repeats)
                print(f"  seed-step   {p:8} {ms:8.2f} ms per step ({1875 * ms / 1e3:6.1f} s per 60,000 images)")
        if data is None:
            continue
        for b in on:
            if b == "numpy":  # minutes per epoch: left out
                continue
            time.sleep(0.2)
            epochs[(device, b)] = seconds = seed_epoch_s(b, device=where)
            label = f"{b} ({where})" if device == "cuda" else b
            cpu = {k[1]: v for k, v in epochs.items() if k[0] == "cpu"}
            vs = ""
            if device == "cuda" and cpu:
                fastest = min(cpu, key=cpu.get)
                vs = f"  ({cpu[fastest] / seconds:.1f}x faster than the CPU epoch on {fastest}, {cpu[fastest]:.2f} s)"
            print(f"  seed-epoch  {label:8} {seconds:8.2f} s{vs}")
        if device == "cpu":
            for peer in peers:
                time.sleep(0.2)
                print(f"  seed-epoch  {peer:8} {bench_peers.seed_epoch_s(*data):8.2f} s")
    if data is None and not quick:
        print("  seed-epoch  - (the full Fashion-MNIST was not found: see zengrad.datasets)")
    if "cpu" not in devices:
        return

    current = kernels.get_backend()
    if current not in backends_of("cpu", [current]):
        return
    rows = layer_split(repeats=10 if quick else 30)
    total = sum(f + b for _, f, b in rows)
    step = steps.get(current) or seed_step_ms(current)
    print(f"\n  one step on '{current}', taken apart (ms):")
    print(f"  {'part':34} {'forward':>8} {'backward':>9} {'share':>6}")
    for part, fwd, bwd in rows:
        print(f"  {part:34} {fwd:8.3f} {bwd:9.3f} {100 * (fwd + bwd) / step:5.1f}%")
    print(f"  {'sum of the parts':34} {total:18.3f} {100 * total / step:5.1f}%")
    print(f"  {'the whole step':34} {step:18.3f}  (the rest: Python, the graph walk, batching)")
    if current == "cpp":
        whole, outside = outside_kernels(repeats=100 if quick else 300)
        print(f"  outside the compiled kernels: {outside:.3f} of {whole:.3f} ms a step ({100 * outside / whole:.1f}%; "
              "Python and NumPy calls)")
