"""Devices: tensors, autograd, layers, optimizers and training on a GPU, and the device API.

Three groups of tests:
- everywhere: device strings, the errors when no GPU is usable (saying why), NumPy dispatch on
  the CPU, `import zengrad` without CuPy, `bench`/`demo --device cuda` failing cleanly.
- on the fake GPU of tests/fake_gpu.py (id "fake-gpu"): zengrad's device code paths, with the
  CPU kernels behind a strict stand-in for CuPy: every op on device data, moves and gradients
  across them, mixing errors, model.to, optimizer state, fit's feeding and its sync policy.
- on a real GPU (id "cuda"; skipped, with the reason, where none is usable): the same tests
  with CuPy and the CUDA kernels, each compared with the CPU.
"""
from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import timeit
import zlib

import numpy as np
import pytest

import fake_gpu
import zengrad as zg
from test_autograd import OPS, numerical_grad
from test_training import small_cnn, small_data
from zengrad import _device
from zengrad import functional as F

L = zg.layers
CUDA_REASON = _device.cuda_unavailable_reason()
needs_cuda = pytest.mark.skipif(CUDA_REASON is not None, reason=f"no usable GPU here: {CUDA_REASON}")
without_cuda = pytest.mark.skipif(CUDA_REASON is None, reason="a GPU is usable here")


@pytest.fixture(params=[pytest.param("fake", id="fake-gpu"), pytest.param("cuda", id="cuda", marks=needs_cuda)])
def device(request, monkeypatch):
    """A GPU device string, "cuda:N": the fake GPU, or the real current one."""
    if request.param == "fake":
        fake_gpu.install(monkeypatch)
        return "cuda:0"
    return _device.resolve("test", "cuda")


def host(a):
    return _device.to_host(a)


def on(device_, a) -> bool:
    return _device.device_of(a) == device_


def assert_weights_close(actual, expected, rtol=1e-2):
    """Each weight within `rtol` of the CPU's in norm: after a few Adam steps a GPU run may take
    the other sign of a near-zero gradient for a few elements (kernels sum in another order)."""
    for a, e in zip(actual, expected):
        assert isinstance(a, np.ndarray) and a.shape == e.shape
        assert np.linalg.norm(a - e) <= rtol * np.linalg.norm(e) + 1e-6, (np.linalg.norm(a - e), np.linalg.norm(e))


# ---- everywhere: device strings, errors without a GPU, CPU dispatch ----

@pytest.mark.parametrize("bad", ["tpu", "gpu", "CUDA", "cuda:", "cuda:-1", "cuda:01", "cuda:0 ", "cuda:x", "cpu:0"])
def test_bad_device_strings_are_value_errors_naming_device(bad):
    with pytest.raises(ValueError, match="'device'"):
        zg.tensor([1.0], device=bad)
    with pytest.raises(ValueError, match="'device'"):
        zg.tensor([1.0]).to(bad)
    with pytest.raises(ValueError, match="'device'"):
        small_cnn().to(bad)


def test_device_of_a_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="'device'"):
        zg.tensor([1.0], device=0)
    with pytest.raises(TypeError, match="'device'"):
        L.Dense(2).to(None)


def test_cpu_tensors_and_models_say_cpu():
    t = zg.tensor([1.0, 2.0], device="cpu")
    assert t.device == "cpu" and t.to("cpu") is t and t.cpu() is t
    assert zg.tensor(t).device == "cpu"
    model = small_cnn()
    assert model.device == "cpu" and model.to("cpu") is model and model.layers[0].device == "cpu"


@without_cuda
def test_asking_for_cuda_without_a_gpu_says_why():
    for ask in (lambda: zg.tensor([1.0], device="cuda"), lambda: zg.tensor([1.0]).to("cuda:0"),
                lambda: zg.tensor([1.0]).cuda(), lambda: small_cnn().to("cuda"), lambda: L.Dense(2).to("cuda")):
        with pytest.raises(RuntimeError, match="'cuda' is not available") as info:
            ask()
        assert any(why in str(info.value) for why in ("CuPy", "zengrad._cuda")), info.value


@pytest.fixture
def no_gpu_module(monkeypatch):
    monkeypatch.setattr(_device, "_gpu", None)


def _cupy_like(count):
    """A module that looks like CuPy to _device's availability check."""
    def device_count():
        if isinstance(count, Exception):
            raise count
        return count
    module = type(sys)("cupy")
    module.cuda = argparse.Namespace(runtime=argparse.Namespace(getDeviceCount=device_count))
    return module


def test_reason_when_cupy_is_missing(no_gpu_module, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)      # import cupy raises ImportError
    with pytest.raises(RuntimeError, match="CuPy is not installed"):
        zg.tensor([1.0], device="cuda")
    assert "CuPy is not installed" in _device.cuda_unavailable_reason()


def test_reason_when_there_is_no_gpu(no_gpu_module, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _cupy_like(RuntimeError("cudaErrorNoDevice")))
    with pytest.raises(RuntimeError, match="no usable CUDA device.*cudaErrorNoDevice"):
        zg.tensor([1.0], device="cuda")
    monkeypatch.setitem(sys.modules, "cupy", _cupy_like(0))
    with pytest.raises(RuntimeError, match="no usable CUDA device"):
        zg.tensor([1.0], device="cuda:0")


def test_reason_when_the_cuda_kernels_are_missing(no_gpu_module, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _cupy_like(1))
    monkeypatch.setattr(zg.kernels, "available_backends", lambda: ["numpy"])
    with pytest.raises(RuntimeError, match=r"zengrad\._cuda"):
        zg.tensor([1.0], device="cuda")


def test_array_module_is_numpy_for_host_data():
    for data in (np.ones(3), np.ones((2, 2), np.float32)[:, 0], np.float32(1), 1.0, [1.0, 2.0], (1,)):
        assert _device.array_module(data) is np
        assert _device.device_of(data) == "cpu" and _device.is_host(data)
    assert zg.tensor(np.ones(2)).device == "cpu"


def test_cpu_dispatch_costs_well_under_a_microsecond():
    a = np.ones(4)
    best = min(timeit.repeat(lambda: _device.array_module(a), number=100_000, repeat=5)) / 100_000
    assert best < 0.5e-6, f"array_module on a NumPy array takes {best * 1e9:.0f} ns"


def test_importing_and_using_zengrad_on_the_cpu_does_not_import_cupy():
    code = ("import sys, zengrad as zg; x = zg.tensor([[1.0, 2.0]], requires_grad=True); "
            "(zg.functional.relu(x @ x.T) * 2.0).sum().backward(); print('cupy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@without_cuda
def test_bench_on_cuda_without_a_gpu_exits_with_the_reason(capsys):
    from zengrad import bench

    assert bench.main(["--device", "cuda", "--filter", "gemm-dense/out", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda" in err and "'cuda' is not available" in err
    assert bench.main(["--device", "cuda", "--list"]) == 0          # listing needs no GPU
    assert "gemm-square/4096-bf16" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--device", "gpu"])
    assert "--device" in capsys.readouterr().err


@without_cuda
def test_demo_on_cuda_without_a_gpu_exits_with_the_reason():
    from zengrad import demo

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    with pytest.raises(SystemExit, match="--device cuda: .*not available"):
        demo.run(parser.parse_args(["--device", "cuda"]))
    with pytest.raises(SystemExit, match="--device tpu: .*'device'"):
        demo.run(parser.parse_args(["--device", "tpu"]))


# ---- on a GPU (fake or real) ----

@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_gradients_on_the_device(device, op):
    """The autograd table on the device, float64: forward as on the CPU, gradients against
    finite differences computed on the device."""
    rng = np.random.default_rng(zlib.crc32(op.name.encode()))
    make = op.make or (lambda r, s: r.standard_normal(s))
    arrays = [np.asarray(make(rng, shape), dtype=np.float64) for shape in op.shapes]
    if op.make is not None and op.make.__name__ == "one_hot":   # as test_autograd: one-hot targets, normal logits
        arrays[0] = rng.standard_normal(op.shapes[0])

    def run(where, requires_grad=False):
        tensors = [zg.tensor(a, requires_grad=requires_grad and i not in op.constant, dtype=np.float64,
                             device=where) for i, a in enumerate(arrays)]
        return tensors, op.fn(*tensors)

    _, cpu_out = run("cpu")
    weights = np.random.default_rng(1).standard_normal(cpu_out.shape)
    tensors, out = run(device, requires_grad=True)
    assert out.device == device and out.dtype == np.float64
    if op.name != "dropout":    # the GPU draws its own masks
        np.testing.assert_allclose(out.numpy(), cpu_out.numpy(), rtol=1e-10, atol=1e-12, err_msg=op.name)
    out.backward(weights)

    def scalar_loss():
        return float((run(device)[1].numpy() * weights).sum())

    for i, t in enumerate(tensors):
        if i in op.constant:
            continue
        assert t.grad is not None and on(device, t.grad), f"{op.name}: input {i}"
        expected = numerical_grad(scalar_loss, arrays, i)
        np.testing.assert_allclose(host(t.grad), expected, rtol=1e-5, atol=1e-7, err_msg=f"{op.name}: input {i}")


def test_float32_stays_float32_on_the_device(device):
    rng = np.random.default_rng(0)
    x = zg.tensor(rng.standard_normal((2, 6, 6, 3)), requires_grad=True, device=device)
    w = zg.tensor(rng.standard_normal((3, 3, 3, 4)), requires_grad=True, device=device)
    out = F.log_softmax(F.flatten(F.max_pool2d(F.conv2d(x, w, activation="relu"))))
    assert out.dtype == np.float32 and out.device == device
    out.backward(np.ones(out.shape, np.float32))
    assert x.grad.dtype == w.grad.dtype == np.float32 and on(device, x.grad) and on(device, w.grad)


def test_tensor_creation_copies_and_host_views(device):
    t = zg.tensor([1.0, 2.0], device="cuda")
    assert t.device == device and t.dtype == np.float32
    a = t.numpy()
    assert isinstance(a, np.ndarray)
    a[0] = 99.0                                    # a copy: the tensor keeps its data
    assert t.numpy()[0] == 1.0
    assert zg.tensor(t).device == device           # device=None keeps the device of the data
    assert zg.tensor(t.data, dtype="float64").device == device
    back = zg.tensor(t, device="cpu")
    assert back.device == "cpu" and isinstance(back.data, np.ndarray)
    assert t.to(device) is t and t.cuda() is t and "device='cuda:" in repr(t)
    assert zg.tensor(np.float64(3.0), device=device).item() == 3.0


def test_to_carries_gradients_across_devices(device):
    x = zg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    g = x.to(device)
    assert g.device == device and g.requires_grad
    ((g * g).to("cpu") * 0.5).sum().backward()
    assert isinstance(x.grad, np.ndarray)
    np.testing.assert_allclose(x.grad, x.numpy())

    w = zg.tensor(np.ones(3), requires_grad=True, device=device)
    (w.cpu() * np.array([1.0, 2.0, 3.0])).sum().backward()
    assert on(device, w.grad)
    np.testing.assert_allclose(host(w.grad), [1.0, 2.0, 3.0])


def test_operands_on_different_devices_are_refused_by_name(device):
    a = zg.tensor(np.ones((2, 2)), requires_grad=True, device=device)
    c = zg.tensor(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(TypeError, match="'other' is on cpu"):
        a + c
    with pytest.raises(TypeError, match="'other' is on cuda"):
        c * a
    with pytest.raises(TypeError, match="'w' is on cuda"):
        F.linear(c, a)
    with pytest.raises(TypeError, match="'b' is on cpu"):
        F.linear(a, a, zg.tensor(np.ones(2)))
    with pytest.raises(TypeError, match="'target' is on cpu"):
        F.mse_loss(a, c)
    with pytest.raises(TypeError, match="'grad'"):
        c.backward(a.data)
    # host constants follow the tensor they meet
    np.testing.assert_allclose((a * np.full((2, 2), 3.0)).numpy(), 3.0)
    np.testing.assert_allclose((2.0 - a).numpy(), 1.0)
    np.testing.assert_allclose((np.ones(2) + a).numpy(), 2.0)
    np.testing.assert_allclose(F.mse_loss(a, np.zeros((2, 2))).numpy(), 1.0)
    np.testing.assert_allclose(a[np.array([1, 1])].numpy(), np.ones((2, 2)))


def test_layers_build_on_their_device_and_copy_host_inputs(device):
    zg.manual_seed(3)
    cpu = L.Dense(3, input_shape=(4,))
    cpu.build_from_shape((None, 4))
    zg.manual_seed(3)
    dense = L.Dense(3).to(device)                   # not built yet: the weights are made there
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    y = dense(x)
    assert y.device == device and dense.kernel.device == device
    np.testing.assert_array_equal(host(dense.kernel.data), cpu.kernel.numpy())   # the same initial values
    np.testing.assert_allclose(y.numpy(), cpu(x).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="'x' is on cuda"):
        cpu(zg.tensor(x, device=device).data)
    bn = L.BatchNormalization(center=False, scale=False).to(device)
    assert bn(x, training=True).device == device and bn.gamma.device == device
    bn.to("cpu")
    assert bn.gamma.device == bn.moving_mean.device == "cpu"


def _train(device, epochs=3, **kw):
    zg.manual_seed(0)
    x, y = small_data()
    model = small_cnn(**kw).to(device)
    model.compile(optimizer=zg.optimizers.Adam(learning_rate=1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=epochs, batch_size=16, validation_data=(x[:20], y[:20]), verbose=0)
    return model, history.history, (x, y)


def test_a_small_cnn_trains_on_the_device_like_on_the_cpu(device):
    model, hist, (x, y) = _train(device, batch_norm=True)
    cpu_model, cpu_hist, _ = _train("cpu", batch_norm=True)
    assert model.device == device and all(on(device, w.data) for w in model.weights)
    assert hist["loss"][-1] < hist["loss"][0]
    for key in cpu_hist:
        np.testing.assert_allclose(hist[key], cpu_hist[key], rtol=1e-3, atol=1e-3, err_msg=key)
    assert_weights_close(model.get_weights(), cpu_model.get_weights())
    probs = model.predict(x, batch_size=7)
    assert isinstance(probs, np.ndarray) and probs.shape == (48, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, cpu_model.predict(x), rtol=1e-3, atol=1e-5)
    loss, accuracy = model.evaluate(x[:20], y[:20], verbose=0)
    assert isinstance(loss, float) and isinstance(accuracy, float)
    assert loss == pytest.approx(hist["val_loss"][-1], rel=1e-6)
    # inputs already on the device are used as they are
    on_device = model.predict(zg.tensor(x, device=device).data)
    np.testing.assert_allclose(on_device, probs, rtol=1e-5, atol=1e-6)


def test_dropout_on_the_device_is_reproducible(device):
    x = zg.tensor(np.ones((64, 32)), device=device)

    def mask(seed):
        zg.manual_seed(seed)
        return F.dropout(x, 0.25, training=True).numpy()

    a, b, c = mask(1), mask(1), mask(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.75)}
    assert 0.15 < np.mean(a == 0) < 0.35
    _, h1, _ = _train(device, epochs=1, dropout=0.3)
    _, h2, _ = _train(device, epochs=1, dropout=0.3)
    assert h1 == h2


def test_model_to_moves_parameters_in_place_and_optimizer_state_follows(device):
    x, y = small_data()

    def run(devices):
        zg.manual_seed(0)
        model = small_cnn()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        params = model.parameters()
        for where in devices:
            model.to(where)
            assert [p is q for p, q in zip(params, model.parameters())] == [True] * len(params)
            model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
        return model

    moved = run([device, "cpu", device])
    assert all(entry[2] == device and all(on(device, s) for s in entry[1])
               for entry in moved.optimizer._state.values())
    assert_weights_close(moved.get_weights(), run(["cpu"] * 3).get_weights())


def test_save_and_load_weights_of_a_device_model(device, tmp_path):
    model, _, _ = _train(device, epochs=1, batch_norm=True)
    model.save_weights(tmp_path / "w.npz")
    with np.load(tmp_path / "w.npz") as f:
        assert all(isinstance(f[k], np.ndarray) for k in f.files)
    expected = model.get_weights()
    for where in ("cpu", device):
        fresh = small_cnn(batch_norm=True).to(where)
        fresh.build((None, 10, 10, 1))
        fresh.load_weights(tmp_path / "w.npz")
        assert fresh.device == where and all(on(where, w.data) for w in fresh.weights)
        for a, b in zip(fresh.get_weights(), expected):
            np.testing.assert_array_equal(a, b)
    fresh.set_weights([w * 0 for w in expected])
    assert all(not w.any() for w in fresh.get_weights())


@pytest.mark.parametrize("make", [
    lambda: zg.optimizers.SGD(learning_rate=0.1),
    lambda: zg.optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True),
    lambda: zg.optimizers.Adam(learning_rate=0.01),
    lambda: zg.optimizers.AdamW(learning_rate=0.01),
    lambda: zg.optimizers.RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
], ids=["sgd", "sgd-nesterov", "adam", "adamw", "rmsprop-centered"])
def test_optimizers_update_on_the_device_as_on_the_cpu(device, make):
    rng = np.random.default_rng(0)
    start = rng.standard_normal((3, 4)).astype(np.float32)
    grads = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(3)]

    def run(where, host_grads):
        p = zg.tensor(start, requires_grad=True, device=where)
        data, opt = p.data, make()
        for g in grads:
            p.grad = g if host_grads else zg.tensor(g, device=where).data
            opt.step([p])
        assert p.data is data and on(where, p.data)    # in place, on its device
        return p.numpy()

    expected = run("cpu", True)
    np.testing.assert_allclose(run(device, False), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run(device, True), expected, rtol=1e-5, atol=1e-6)   # host grads are copied
    p = zg.tensor(start, requires_grad=True)
    p.grad = zg.tensor(grads[0], device=device).data
    with pytest.raises(TypeError, match="'grad' is on cuda"):
        make().step([p])


def test_losses_and_metrics_on_the_device(device):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 4, 6)
    onehot = np.eye(4, dtype=np.float32)[labels]
    cases = [
        (zg.losses.SparseCategoricalCrossentropy(), labels, probs),
        (zg.losses.SparseCategoricalCrossentropy(from_logits=True), labels, logits),
        (zg.losses.CategoricalCrossentropy(), onehot, probs),
        (zg.losses.CategoricalCrossentropy(from_logits=True), onehot, logits),
        (zg.losses.BinaryCrossentropy(), onehot, probs),
        (zg.losses.BinaryCrossentropy(from_logits=True), onehot, logits),
        (zg.losses.MeanSquaredError(), onehot, probs),
    ]
    for loss, target, pred in cases:
        values, grads = [], []
        for where in ("cpu", device):
            p = zg.tensor(pred, requires_grad=True, device=where)
            value = loss(target, p)
            assert value.device == where, loss
            value.backward()
            values.append(value.item())
            grads.append(p.grad)
        assert values[1] == pytest.approx(values[0], rel=1e-5), loss
        np.testing.assert_allclose(host(grads[1]), grads[0], rtol=1e-4, atol=1e-6, err_msg=repr(loss))
        device_target = zg.tensor(target, device=device).data    # targets already on the device
        assert loss(device_target, zg.tensor(pred, device=device)).item() == pytest.approx(values[0], rel=1e-5)
    for metric in ("accuracy", "sparse_categorical_accuracy"):
        m = zg.metrics.get(metric)
        m.update_state(labels, zg.tensor(probs, device=device).data)
        m.update_state(zg.tensor(labels, device=device).data, zg.tensor(probs, device=device).data)
        assert m.result() == pytest.approx(np.mean(probs.argmax(axis=1) == labels))


def test_fit_reads_the_gpu_back_per_epoch_not_per_step(monkeypatch):
    """The sync policy: a step queues work and never waits for the GPU; the running loss and
    metrics are read back at the end of an epoch (or for a callback that asks per batch)."""
    fake_gpu.install(monkeypatch)
    reads = []
    for name in ("get", "item", "__float__", "__int__", "__bool__"):
        real = getattr(fake_gpu.FakeArray, name)
        monkeypatch.setattr(fake_gpu.FakeArray, name,
                            (lambda real, name: lambda self, *a: reads.append(name) or real(self, *a))(real, name))

    def count(batch_size, callbacks=()):
        zg.manual_seed(0)
        x, y = small_data()
        model = small_cnn(dropout=0.2).to("cuda")
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        reads.clear()
        model.fit(x, y, epochs=2, batch_size=batch_size, validation_data=(x, y), verbose=0,
                  callbacks=list(callbacks))
        return len(reads)

    assert count(16) == count(4) > 0     # 3 or 12 steps an epoch: the same reads
    per_batch = zg.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: None)
    assert count(4, [per_batch]) > count(16, [per_batch])


def test_bench_runs_its_gpu_path_on_the_fake_gpu(monkeypatch, capsys):
    """The GPU bench's code (device copies, event clock, cuBLAS contender, checks, table) on the
    fake GPU; the "cuda" backend is stood in for by the fake kernels."""
    from zengrad import bench, bench_cuda, bench_training

    fake_gpu.install(monkeypatch)
    monkeypatch.setattr(bench_cuda, "_compute_type", lambda kind: contextlib.nullcontext())
    monkeypatch.setattr(zg.kernels, "use_backend", lambda name: contextlib.nullcontext(name))
    case = next(c for c in bench.GPU_CASES if c.name == "gemm-dense/out")
    timings = bench.measure_case(case, ["cuda"], settings=bench.GPU_QUICK, device="cuda")
    assert [t.contender for t in timings] == ["cuda", "cupy-matmul"]
    records = bench.summarise(timings, 4)
    assert all(r["device"] == "cuda" and r["failure"] is None and r["error"] < 1e-5 for r in records), records
    assert records[1]["speedup_vs_matmul"] == pytest.approx(1.0)
    bench.print_table(bench.table_rows(records, bench.error_bound(np.float32)))
    assert "cupy-matmul" in capsys.readouterr().out
    assert bench.main(["--device", "cuda", "--filter", "gemm-dense/out", "--quick"]) == 0
    assert bench_training.seed_step_ms(zg.kernels.get_backend(), repeats=2, device="cuda:0") > 0


def test_bench_error_bounds_follow_the_gemm_precision():
    from zengrad import bench

    assert bench.error_bound(np.float32) < bench.error_bound(np.float32, "tf32") < bench.error_bound(np.float32, "bf16")
    names = {c.name: c for c in bench.select("4096", device="cuda")}
    assert {n: c.precision for n, c in names.items()} == {
        "gemm-square/4096": None, "gemm-square/4096-tf32": "tf32", "gemm-square/4096-bf16": "bf16"}
    assert bench.contenders(names["gemm-square/4096-bf16"], ["cuda"], device="cuda") == ["cuda", "cublas-bf16"]
    assert not bench.select("4096")    # not on the CPU


def test_cross_entropy_checks_host_labels_before_they_go_to_the_gpu(device):
    logits = zg.tensor(np.zeros((3, 4), np.float32), device=device)
    with pytest.raises(ValueError, match=r"^cross_entropy\(\): argument 'labels' must be class indices in \[0, 4\)"):
        F.cross_entropy(logits, np.array([0, 4, 1]))
