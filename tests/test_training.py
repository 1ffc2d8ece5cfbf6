"""Sequential, compile/fit/evaluate/predict, optimizers, losses, metrics, callbacks, saving.

Kept small: the whole file runs in seconds on two cores."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

import zengrad as zg
from zengrad import functional as F

L = zg.layers


def seed_cnn():
    """The seed CNN (design.md), with the 10-way softmax output."""
    return zg.Sequential([
        L.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        L.MaxPooling2D((2, 2)),
        L.Conv2D(64, (3, 3), activation="relu"),
        L.MaxPooling2D((2, 2)),
        L.Flatten(),
        L.Dense(128, activation="relu"),
        L.Dense(10, activation="softmax"),
    ])


def small_cnn(dropout=0.0, batch_norm=False, out=10, activation="softmax"):
    """A seed-CNN-shaped model on 10x10 images, cheap enough to train many times."""
    layers = [L.Conv2D(4, 3, activation="relu", input_shape=(10, 10, 1))]
    if batch_norm:
        layers.append(L.BatchNormalization())
    layers += [L.MaxPooling2D(), L.Flatten()]
    if dropout:
        layers.append(L.Dropout(dropout))
    layers.append(L.Dense(out, activation=activation))
    return zg.Sequential(layers)


def small_data(n=48, classes=10, seed=0):
    g = np.random.default_rng(seed)
    return g.random((n, 10, 10, 1)).astype(np.float32), g.integers(0, classes, n)


# ---- the seed CNN ----

def test_seed_cnn_summary(capsys):
    model = seed_cnn()
    assert model.built and model.output_shape == (None, 10)
    model.summary()
    text = capsys.readouterr().out
    rows = {m.group(1): (m.group(2), m.group(3))
            for m in re.finditer(r"^ \S+ \((\w+)\)\s+(\([^)]*\))\s+([\d,]+)$", text, re.M)
            if m.group(1) in ("Flatten",)}
    assert rows["Flatten"] == ("(None, 1600)", "0")
    shapes_and_counts = re.findall(r"\((?:Conv2D|MaxPooling2D|Flatten|Dense)\)\s+(\([^)]*\))\s+([\d,]+)", text)
    assert shapes_and_counts == [
        ("(None, 26, 26, 32)", "320"), ("(None, 13, 13, 32)", "0"), ("(None, 11, 11, 64)", "18,496"),
        ("(None, 5, 5, 64)", "0"), ("(None, 1600)", "0"), ("(None, 128)", "204,928"), ("(None, 10)", "1,290"),
    ]
    assert "Total params: 225,034" in text
    assert "Trainable params: 225,034" in text
    assert "Non-trainable params: 0" in text
    assert model.count_params() == 225_034 == sum(p.data.size for p in model.parameters())


def test_seed_cnn_overfits_a_batch_of_64():
    zg.manual_seed(0)
    try:
        (x, y), _ = zg.datasets.fashion_mnist.load_embedded()
        x, y = x[:64].reshape(64, 28, 28, 1) / np.float32(255), y[:64]
    except Exception:  # no embedded subset: random images with random labels (pure memorisation)
        x, y = np.random.default_rng(0).random((64, 28, 28, 1), np.float32), np.arange(64) % 10
    model = seed_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for step in range(1, 101):
        model.train_on_batch(x, y)
        if step % 5 == 0 and model.evaluate(x, y, batch_size=64, verbose=0)[1] == 1.0:
            break
    loss, accuracy = model.evaluate(x, y, batch_size=64, verbose=0)
    assert accuracy == 1.0, f"accuracy {accuracy} after {step} steps"
    assert loss < 0.5


def test_low_level_training_loop():
    zg.manual_seed(1)
    x, y = small_data()
    model = small_cnn(activation=None)
    opt = zg.optimizers.Adam(learning_rate=1e-2)
    params = model.parameters()
    losses = []
    for _ in range(40):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        assert all(p.grad is not None and p.grad.shape == p.shape for p in params)
        opt.step(params)
        opt.zero_grad(params)
        assert all(p.grad is None for p in params)
        losses.append(float(loss.data))
    assert losses[-1] < 0.6 * losses[0]
    assert opt.iterations == 40


# ---- optimizers against the formulas ----

def _reference_run(kind, p, grads, **kw):
    p = p.copy()
    s = {"m": np.zeros_like(p), "v": np.zeros_like(p), "a": np.zeros_like(p)}
    for t, g in enumerate(grads, start=1):
        lr = kw["learning_rate"]
        if kind == "SGD":
            if kw.get("momentum", 0):
                s["m"] = kw["momentum"] * s["m"] - lr * g
                p = p + (kw["momentum"] * s["m"] - lr * g if kw.get("nesterov") else s["m"])
            else:
                p = p - lr * g
        elif kind in ("Adam", "AdamW"):
            if kind == "AdamW":
                p = p - p * kw["weight_decay"] * lr
            b1, b2, eps = kw["beta_1"], kw["beta_2"], kw["epsilon"]
            s["m"] = b1 * s["m"] + (1 - b1) * g
            s["v"] = b2 * s["v"] + (1 - b2) * g * g
            alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
            p = p - alpha * s["m"] / (np.sqrt(s["v"]) + eps)
        elif kind == "RMSprop":
            rho, eps, mom = kw["rho"], kw["epsilon"], kw.get("momentum", 0.0)
            s["v"] = rho * s["v"] + (1 - rho) * g * g
            if kw.get("centered"):
                s["a"] = rho * s["a"] + (1 - rho) * g
                denom = s["v"] - s["a"] ** 2 + eps
            else:
                denom = s["v"] + eps
            inc = lr * g / np.sqrt(denom)
            if mom:
                s["m"] = mom * s["m"] + inc
                p = p - s["m"]
            else:
                p = p - inc
    return p


@pytest.mark.parametrize("kind, kw", [
    ("SGD", dict(learning_rate=0.1)),
    ("SGD", dict(learning_rate=0.1, momentum=0.9)),
    ("SGD", dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
    ("Adam", dict(learning_rate=0.01, beta_1=0.8, beta_2=0.95, epsilon=1e-3)),
    ("AdamW", dict(learning_rate=0.01, weight_decay=0.1, beta_1=0.8, beta_2=0.95, epsilon=1e-3)),
    ("RMSprop", dict(learning_rate=0.01, rho=0.8, epsilon=1e-3)),
    ("RMSprop", dict(learning_rate=0.01, rho=0.8, momentum=0.5, epsilon=1e-3)),
    ("RMSprop", dict(learning_rate=0.01, rho=0.8, momentum=0.5, epsilon=1e-3, centered=True)),
])
def test_optimizer_matches_the_formulas(rng, kind, kw):
    start = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) * 0.01 for _ in range(4)]
    p = zg.tensor(start, requires_grad=True, dtype="float64")
    frozen = zg.tensor(start, requires_grad=True, dtype="float64")  # no grad: left alone
    opt = getattr(zg.optimizers, kind)(**kw)
    for g in grads:
        p.grad = g.copy()
        opt.step([p, frozen])
        np.testing.assert_array_equal(p.grad, g)  # the gradient is not consumed
        opt.zero_grad([p])
    np.testing.assert_allclose(p.data, _reference_run(kind, start, grads, **kw), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(frozen.data, start)


def test_optimizer_defaults_are_keras():
    assert zg.optimizers.SGD().get_config() == dict(name="SGD", learning_rate=0.01, weight_decay=None,
                                                    momentum=0.0, nesterov=False)
    adam = zg.optimizers.Adam()
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == (0.001, 0.9, 0.999, 1e-7)
    adamw = zg.optimizers.AdamW()
    assert (adamw.learning_rate, adamw.weight_decay) == (0.001, 0.004)
    rms = zg.optimizers.RMSprop()
    assert (rms.learning_rate, rms.rho, rms.momentum, rms.epsilon) == (0.001, 0.9, 0.0, 1e-7)
    with pytest.raises(ValueError, match="learning_rate"):
        zg.optimizers.Adam(learning_rate=-1)


def test_optimizer_updates_float32_in_place():
    p = zg.tensor(np.ones((2, 2)), requires_grad=True)
    data = p.data
    p.grad = np.full((2, 2), 0.5, np.float32)
    zg.optimizers.Adam(learning_rate=0.1).step([p])
    assert p.data is data and p.data.dtype == np.float32
    np.testing.assert_allclose(p.data, 0.9, rtol=1e-5)


@pytest.mark.parametrize("kind", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_optimizer_checks_every_gradient_before_updating_any(kind):
    a, b = zg.tensor(np.ones((2, 2)), requires_grad=True), zg.tensor(np.ones(3), requires_grad=True)
    a.grad, b.grad = np.full((2, 2), 0.5, np.float32), np.ones(4, np.float32)
    opt = getattr(zg.optimizers, kind)()
    with pytest.raises(ValueError, match=r"step\(\): a parameter of shape \(3,\) has a gradient of shape \(4,\)"):
        opt.step([a, b])
    np.testing.assert_array_equal(a.data, np.ones((2, 2)))
    assert opt.iterations == 0


@pytest.mark.parametrize("kind", ["SGD", "Adam", "RMSprop"])
def test_optimizer_converts_gradients_of_another_dtype_or_type(kind):
    """A float64 array or a nested list as the gradient of a float32 parameter: the update of its
    float32 values."""
    params = [zg.tensor(np.ones((2, 3)), requires_grad=True) for _ in range(3)]
    grad = np.linspace(-1, 1, 6).reshape(2, 3)
    for p, g in zip(params, [grad.astype(np.float32), grad, grad.tolist()]):
        p.grad = g
    getattr(zg.optimizers, kind)(learning_rate=0.1).step(params)
    assert all(p.data.dtype == np.float32 for p in params)
    np.testing.assert_array_equal(params[1].data, params[0].data)
    np.testing.assert_array_equal(params[2].data, params[0].data)


def _adam_steps(grad_lists, **kw):
    """Parameters (float32 ones) after Adam steps with each list of gradients, one fresh optimizer."""
    params = [zg.tensor(np.ones(g.shape), requires_grad=True) for g in grad_lists[0]]
    opt = zg.optimizers.Adam(**kw)
    for grads in grad_lists:
        for p, g in zip(params, grads):
            p.grad = g
        opt.step(params)
    return params, opt


def test_adam_repeated_steps_match_the_formulas(rng):
    """The steps after the first go straight to the kernel (the same parameters, every gradient
    there): the same values as the formulas, step after step."""
    shapes = [(3, 4), (5,), (2, 3, 2)]
    grads = [[rng.standard_normal(s) * 0.01 for s in shapes] for _ in range(5)]
    kw = dict(learning_rate=0.01, beta_1=0.8, beta_2=0.95, epsilon=1e-3)
    params, opt = _adam_steps([[g.astype(np.float32) for g in gs] for gs in grads], **kw)
    assert opt.iterations == 5
    for i, p in enumerate(params):
        expected = _reference_run("Adam", np.ones(shapes[i]), [gs[i].astype(np.float32) for gs in grads], **kw)
        np.testing.assert_allclose(p.data, expected, rtol=2e-6, atol=1e-7)


def test_adam_repeated_step_still_checks_and_converts(rng):
    """After full steps, a gradient of another shape is still refused by name (nothing updated),
    a missing one leaves its parameter alone, and a float64 one or a list updates as float32."""
    grads = [np.full((2, 3), 0.5, np.float32), np.full(4, -0.25, np.float32)]
    params, opt = _adam_steps([grads, grads], learning_rate=0.1)
    before = [p.data.copy() for p in params]
    params[1].grad = np.ones(5, np.float32)
    with pytest.raises(ValueError, match=r"a parameter of shape \(4,\) has a gradient of shape \(5,\)"):
        opt.step(params)
    assert opt.iterations == 2 and all((p.data == b).all() for p, b in zip(params, before))

    params[1].grad = None
    opt.step(params)
    np.testing.assert_array_equal(params[1].data, before[1])
    reference, _ = _adam_steps([grads, grads, grads], learning_rate=0.1)
    np.testing.assert_array_equal(params[0].data, reference[0].data)

    for as_given in (lambda g: g.astype(np.float64), lambda g: g.tolist()):
        params, opt = _adam_steps([grads, grads], learning_rate=0.1)
        for p, g in zip(params, grads):
            p.grad = as_given(g)
        opt.step(params)
        reference, _ = _adam_steps([grads, grads, grads], learning_rate=0.1)
        for p, r in zip(params, reference):
            assert p.data.dtype == np.float32
            np.testing.assert_array_equal(p.data, r.data)


def test_adam_keeps_state_per_parameter_whatever_the_list(rng):
    """A step of another list of parameters (a subset, or another order) uses each one's own moments."""
    g = [np.full((2, 2), 0.5, np.float32), np.full(3, -1.0, np.float32)]
    params, opt = _adam_steps([g, g], learning_rate=0.1)
    opt.step(params[::-1])
    opt.step(params[:1])
    reference, _ = _adam_steps([g, g, g], learning_rate=0.1)
    np.testing.assert_array_equal(params[1].data, reference[1].data)
    reference, _ = _adam_steps([g, g, g, g], learning_rate=0.1)
    np.testing.assert_array_equal(params[0].data, reference[0].data)

    # the list of the last step, a new parameter put into it: that one starts its own moments
    opt.step(params)
    fresh = zg.tensor(np.ones(3), requires_grad=True)
    fresh.grad = g[1]
    params[1] = fresh
    opt.step(params)
    assert opt.iterations == 6
    alone = zg.optimizers.Adam(learning_rate=0.1)
    alone.iterations = 5
    twin = zg.tensor(np.ones(3), requires_grad=True)
    twin.grad = g[1]
    alone.step([twin])
    np.testing.assert_array_equal(fresh.data, twin.data)


# ---- compile / fit / evaluate / predict ----

def test_fit_history_evaluate_predict():
    zg.manual_seed(0)
    x, y = small_data()
    model = small_cnn()
    model.compile(optimizer=zg.optimizers.Adam(learning_rate=1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=3, batch_size=16, validation_data=(x[:20], y[:20]), verbose=0)
    assert model.history is history and history.epoch == [0, 1, 2]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in history.history.values())
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, accuracy = model.evaluate(x[:20], y[:20], verbose=0)
    assert loss == pytest.approx(history.history["val_loss"][-1], rel=1e-6)
    probs = model.predict(x, batch_size=7)
    assert isinstance(probs, np.ndarray) and probs.shape == (48, 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, model(x).data, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert accuracy == pytest.approx(np.mean(probs[:20].argmax(axis=1) == y[:20]))
    # the fused (logits) loss is the loss of the probabilities
    prob_loss = zg.losses.SparseCategoricalCrossentropy()(y[:20], model(x[:20]))
    assert loss == pytest.approx(float(prob_loss.data), rel=1e-5)
    # no metrics: a float
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert isinstance(model.evaluate(x, y, verbose=0), float)


def test_categorical_binary_and_mse_losses():
    zg.manual_seed(0)
    x, y = small_data(classes=3)
    onehot = np.eye(3, dtype=np.float32)[y]
    model = small_cnn(out=3)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    h = model.fit(x, onehot, epochs=2, batch_size=16, verbose=0)
    assert h.history["accuracy"][-1] >= 0  # categorical accuracy: argmax vs argmax
    loss, acc = model.evaluate(x, onehot, verbose=0)
    probs = model.predict(x)
    assert acc == pytest.approx(np.mean(probs.argmax(1) == y))
    assert loss == pytest.approx(float(-np.log(probs[np.arange(48), y]).mean()), rel=1e-5)

    labels = (y > 0).astype(np.float32)
    model = small_cnn(out=1, activation="sigmoid")
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, labels, epochs=2, batch_size=16, verbose=0)
    loss, acc = model.evaluate(x, labels, verbose=0)
    p = model.predict(x)[:, 0]
    assert acc == pytest.approx(np.mean((p > 0.5) == labels))
    assert loss == pytest.approx(float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))), rel=1e-5)

    target = x.reshape(48, -1)[:, :2] * 3
    model = small_cnn(out=2, activation=None)
    model.compile(optimizer=zg.optimizers.Adam(learning_rate=1e-2), loss="mse")
    h = model.fit(x, target, epochs=4, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    assert model.evaluate(x, target, verbose=0) == pytest.approx(
        float(np.mean((model.predict(x) - target) ** 2)), rel=1e-5)


def test_loss_objects_and_the_logits_shortcut():
    zg.manual_seed(0)
    x, y = small_data()
    base = small_cnn(activation=None)
    logits = base(x)
    expected = float(F.cross_entropy(logits, y).data)
    # from_logits=True on a linear output; an Activation("softmax") layer on top takes the fused path
    base.compile(optimizer="sgd", loss=zg.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert base.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-6)
    stacked = zg.Sequential(base.layers + [L.Activation("softmax")])
    stacked.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, acc = stacked.evaluate(x, y, verbose=0)
    assert loss == pytest.approx(expected, rel=1e-6)
    assert acc == pytest.approx(np.mean(logits.data.argmax(1) == y))
    # the probability form (Keras' clipped log) agrees away from the clip
    probs = F.softmax(logits)
    assert float(zg.losses.SparseCategoricalCrossentropy()(y, probs).data) == pytest.approx(expected, rel=1e-5)
    onehot = np.eye(10, dtype=np.float32)[y]
    assert float(zg.losses.CategoricalCrossentropy()(onehot, probs).data) == pytest.approx(expected, rel=1e-5)
    # sigmoid + binary cross-entropy from logits is stable where the probabilities saturate
    z = zg.tensor(np.array([[-200.0], [0.0], [200.0]]), requires_grad=True)
    t = np.array([1.0, 0.0, 0.0])
    loss = zg.losses.BinaryCrossentropy(from_logits=True)(t, z)
    assert float(loss.data) == pytest.approx((200 + np.log(2) + 200) / 3, rel=1e-5)
    loss.backward()
    np.testing.assert_allclose(z.grad[:, 0], np.array([-1.0, 0.5, 1.0]) / 3, rtol=1e-5)


def test_accuracy_kinds():
    m = zg.metrics
    probs = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    np.testing.assert_array_equal(m.accuracy(np.array([1, 1, 1]), probs), [1, 0, 1])            # sparse
    np.testing.assert_array_equal(m.accuracy(np.array([[1], [0], [0]]), probs), [1, 1, 0])      # sparse (N, 1)
    np.testing.assert_array_equal(m.accuracy(np.eye(2)[[1, 0, 0]], probs), [1, 1, 0])           # one-hot
    np.testing.assert_array_equal(m.accuracy(np.array([1, 0, 1]), np.array([[0.5], [0.2], [0.51]])),
                                  [0, 1, 1])                                                    # binary, > 0.5
    acc = m.get("accuracy")
    acc.update_state(np.array([1, 1]), probs[:2])
    acc.update_state(np.array([1]), probs[2:])
    assert acc.result() == pytest.approx(2 / 3) and acc.name == "accuracy"


def test_uint8_inputs_validation_split_and_unshuffled_fit():
    zg.manual_seed(0)
    x = np.random.default_rng(0).integers(0, 256, (40, 10, 10, 1)).astype(np.uint8)
    y = np.arange(40) % 10
    model = small_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    h = model.fit(x, y, epochs=1, batch_size=8, validation_split=0.25, shuffle=False, verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert model.predict(x).dtype == np.float32


def test_manual_seed_makes_training_bit_identical():
    x, y = small_data()

    def run(seed):
        zg.manual_seed(seed)
        model = small_cnn(dropout=0.3, batch_norm=True)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)  # shuffled, with dropout
        return model.get_weights()

    a, b, c = run(5), run(5), run(6)
    assert len(a) == 8  # conv (2), batch norm (4: gamma, beta, moving mean and variance), dense (2)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    assert not all(np.array_equal(wa, wc) for wa, wc in zip(a, c))


# ---- progress output ----

def test_progress_output(capsys):
    zg.manual_seed(0)
    x, y = small_data(n=20)
    model = small_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=10, validation_data=(x, y))
    out = capsys.readouterr().out
    line = (r"2/2 \[={30}\] - \d+s \d+(ms|us|s)/step - loss: \d\.\d{4} - accuracy: \d\.\d{4}"
            r" - val_loss: \d\.\d{4} - val_accuracy: \d\.\d{4}")
    assert re.fullmatch(rf"Epoch 1/2\n{line}\nEpoch 2/2\n{line}\n", out), out
    model.fit(x, y, epochs=1, batch_size=10, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(x, y, epochs=2, batch_size=10, verbose=2)
    out = capsys.readouterr().out
    assert re.fullmatch(r"(Epoch \d/2\n2/2 - \d+s - loss: \S+ - accuracy: \S+ - \d+(ms|us|s)/step\n){2}", out), out
    model.evaluate(x, y)
    assert re.fullmatch(r"1/1 \[={30}\] - \d+s \S+/step - loss: \S+ - accuracy: \S+\n", capsys.readouterr().out)


def test_progress_bar_redraws_in_place_on_a_terminal():
    from zengrad.models._progbar import Progbar

    class Terminal:
        def __init__(self):
            self.text = ""
        def write(self, s):
            self.text += s
        def flush(self):
            pass
        def isatty(self):
            return True

    term = Terminal()
    bar = Progbar(4, interval=0.0, stream=term)
    bar.update(1, {"loss": 1.5})
    bar.update(4, {"loss": 0.25}, finalize=True)
    first, second = term.text.split("\r")[1:]
    assert first.startswith("1/4 [======>.......................] - ETA: ") and first.endswith("loss: 1.5000")
    assert second.startswith("4/4 [==============================] - 0s ") and second.endswith("loss: 0.2500\n")


# ---- saving ----

def test_save_and_load_weights_round_trip_exactly(tmp_path):
    zg.manual_seed(0)
    x, y = small_data()
    model = small_cnn(batch_norm=True)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "model.weights.npz"
    model.save_weights(path)
    model.save_weights(str(path))  # overwriting is fine
    assert os.listdir(tmp_path) == ["model.weights.npz"]  # no temporary file left behind

    zg.manual_seed(1)
    other = small_cnn(batch_norm=True)
    assert not np.array_equal(other.get_weights()[0], model.get_weights()[0])
    other.load_weights(path)
    for a, b in zip(model.get_weights(), other.get_weights()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert other.get_weights()[4].any()  # the moving mean came back too
    np.testing.assert_array_equal(model.predict(x), other.predict(x))


def test_load_weights_refuses_other_shapes_naming_the_layer(tmp_path):
    model = small_cnn()
    path = tmp_path / "w.npz"
    model.save_weights(path)
    other = zg.Sequential([L.Conv2D(4, 3, activation="relu", input_shape=(10, 10, 1)), L.MaxPooling2D(),
                           L.Flatten(), L.Dense(7, activation="softmax", name="head")])
    before = other.get_weights()
    with pytest.raises(ValueError, match=r"'kernel' of layer 3 'head' \(Dense\) has shape \(64, 7\) in the "
                                         r"model but \(64, 10\)"):
        other.load_weights(path)
    for a, b in zip(before, other.get_weights()):  # nothing was changed
        np.testing.assert_array_equal(a, b)
    deeper = small_cnn(batch_norm=True)
    with pytest.raises(ValueError, match=r"batch_normalization.*BatchNormalization"):
        deeper.load_weights(path)
    with pytest.raises(ValueError, match="not been built|build"):
        zg.Sequential([L.Dense(3)]).load_weights(path)


def test_save_weights_is_atomic(tmp_path, monkeypatch):
    model = small_cnn()
    path = tmp_path / "w.npz"
    model.save_weights(path)
    original = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        model.save_weights(path)
    assert path.read_bytes() == original and os.listdir(tmp_path) == ["w.npz"]


# ---- callbacks ----

def test_early_stopping_stops_when_the_monitor_stalls():
    x, y = small_data(n=16)
    model = small_cnn()
    model.compile(optimizer=zg.optimizers.SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy")
    stop = zg.callbacks.EarlyStopping(patience=2)
    history = model.fit(x, y, epochs=20, batch_size=8, validation_data=(x, y), callbacks=[stop], verbose=0)
    assert history.epoch == [0, 1, 2] and stop.stopped_epoch == 2


def test_early_stopping_restores_the_best_weights():
    model = small_cnn()
    stop = zg.callbacks.EarlyStopping(monitor="val_accuracy", patience=1, restore_best_weights=True)
    assert stop.mode == "max"
    stop.set_model(model)
    stop.on_train_begin()
    snapshots = []
    for epoch, acc in enumerate([0.5, 0.8, 0.6, 0.7]):
        for p in model.parameters():
            p.data += 1.0
        snapshots.append(model.get_weights())
        stop.on_epoch_end(epoch, {"val_accuracy": acc, "val_loss": 1.0})
        if model.stop_training:
            break
    assert epoch == 2 and stop.stopped_epoch == 2 and stop.best == 0.8
    stop.on_train_end()
    for a, b in zip(model.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_writes_files(tmp_path):
    x, y = small_data(n=16)
    model = small_cnn()
    model.compile(optimizer=zg.optimizers.SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    every = zg.callbacks.ModelCheckpoint(str(tmp_path / "all" / "ckpt-{epoch:02d}-{loss:.2f}.npz"), monitor="loss")
    best = zg.callbacks.ModelCheckpoint(tmp_path / "best-{epoch}.npz", save_best_only=True)
    model.fit(x, y, epochs=3, batch_size=8, validation_data=(x, y), callbacks=[every, best], verbose=0)
    names = sorted(os.listdir(tmp_path / "all"))
    assert [n[:8] for n in names] == ["ckpt-01-", "ckpt-02-", "ckpt-03-"] and all(n.endswith(".npz") for n in names)
    assert sorted(p for p in os.listdir(tmp_path) if p != "all") == ["best-1.npz"]  # val_loss never improved
    fresh = small_cnn()
    fresh.load_weights(tmp_path / "all" / names[-1])
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_custom_callback_hooks():
    calls = []

    class Recorder(zg.callbacks.Callback):
        def on_train_begin(self, logs=None):
            calls.append("begin")

        def on_epoch_end(self, epoch, logs=None):
            calls.append((epoch, sorted(logs)))

        def on_train_end(self, logs=None):
            calls.append("end")

    x, y = small_data(n=8)
    model = small_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=4, callbacks=[Recorder()], verbose=0)
    assert calls == ["begin", (0, ["accuracy", "loss"]), (1, ["accuracy", "loss"]), "end"]


# ---- errors ----

def test_fit_before_compile():
    x, y = small_data(n=4)
    with pytest.raises(RuntimeError, match="compile"):
        small_cnn().fit(x, y, verbose=0)
    with pytest.raises(RuntimeError, match="compile"):
        small_cnn().evaluate(x, y, verbose=0)


def test_compile_refuses_unknown_names():
    model = small_cnn()
    with pytest.raises(ValueError, match=r"'hinge'.*binary_crossentropy.*categorical_crossentropy.*mse"
                                         r".*sparse_categorical_crossentropy"):
        model.compile(optimizer="adam", loss="hinge")
    with pytest.raises(ValueError, match=r"'adagrad'.*adam.*rmsprop.*sgd"):
        model.compile(optimizer="adagrad", loss="mse")
    with pytest.raises(ValueError, match=r"'f1'.*accuracy"):
        model.compile(optimizer="adam", loss="mse", metrics=["f1"])
    with pytest.raises(ValueError, match="loss"):
        model.compile(optimizer="adam")


def test_train_on_batch_checks_every_batch_after_the_first():
    """Batches shaped as the last one skip the structure checks, not the targets' values; a model
    changed since (a layer popped or added) checks the next batch in full."""
    x, y = small_data(n=8)
    model = small_cnn()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.train_on_batch(x, y)
    for bad, error, match in [(np.full(8, 10), ValueError, r"label 10 is out of range for 10 classes"),
                              (-np.ones(8, np.int64), ValueError, "out of range"),
                              (y + 0.5, ValueError, "integers")]:
        bad = bad.astype(y.dtype) if bad.dtype.kind == y.dtype.kind else bad
        with pytest.raises(error, match=match):
            model.train_on_batch(x, bad)
    with pytest.raises(ValueError, match=r"same number of samples.*8 and 7"):
        model.train_on_batch(x, y[:7])
    model.pop()
    model.add(L.Dense(3, activation="softmax"))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"label \d+ is out of range for 3 classes"):
        model.train_on_batch(x, np.full(8, 7))
    model.train_on_batch(x, y % 3)
    with pytest.raises(ValueError, match=r"'dense\w*' \(Dense\).*axis 1 has size 100"):
        model.train_on_batch(np.zeros((8, 12, 12, 1), np.float32), y % 3)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint64, np.float32,
                                   ">i4", ">u2"])
def test_sparse_labels_out_of_range_in_every_dtype(dtype):
    """The range check reads signed labels as unsigned (one pass): negative ones are caught too,
    and the message names the offending label."""
    loss = zg.losses.SparseCategoricalCrossentropy()
    good = np.array([0, 3, 9, 2], dtype)
    loss.check_targets(good, (None, 10))
    bad = [good.copy() for _ in range(2)]
    bad[0][2] = 10
    if np.dtype(dtype).kind != "u":
        bad[1][1] = -1
    for labels, shown in zip(bad, ["10", "-1"]):
        if (labels == good).all():
            continue
        with pytest.raises(ValueError, match=f"label {shown} is out of range for 10 classes"):
            loss.check_targets(labels, (None, 10))


def test_bad_training_data():
    x, y = small_data(n=8)
    model = small_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with pytest.raises(ValueError, match=r"label 10 is out of range for 10 classes"):
        model.fit(x, np.full(8, 10), verbose=0)
    with pytest.raises(ValueError, match="out of range"):
        model.evaluate(x, -np.ones(8, int), verbose=0)
    with pytest.raises(ValueError, match="integers"):
        model.fit(x, y + 0.5, verbose=0)
    with pytest.raises(ValueError, match=r"same number of samples.*8 and 7"):
        model.fit(x, y[:7], verbose=0)
    with pytest.raises(ValueError, match=r"'conv2d\w*' \(Conv2D\).*\(None, 10, 10\).*channel axis"):
        model.fit(x[..., 0], y, verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="validation_data"):
        model.fit(x, y, validation_data=(x,), verbose=0)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="one-hot"):
        model.fit(x, y, verbose=0)


def test_unbuilt_model_errors_and_lazy_build():
    model = zg.Sequential([L.Dense(4, activation="relu"), L.Dense(2)])
    with pytest.raises(ValueError, match="not been built"):
        model.summary()
    out = model(np.ones((3, 5), np.float32))
    assert out.shape == (3, 2) and model.built and model.input_shape == (None, 5)
    assert len(model.parameters()) == 4
    with pytest.raises(TypeError, match="Layer"):
        model.add("dense")
    inp = zg.Sequential([L.Input((6,)), L.Dense(3)])
    assert inp.built and inp.output_shape == (None, 3) and len(inp.layers) == 1
