"""The Keras-style progress line, written to sys.stdout.

  1875/1875 [==============================] - 12s 6ms/step - loss: 0.4000 - accuracy: 0.8600

verbose=1: the bar, redrawn in place on a terminal (only the final line elsewhere, so logs stay
clean); verbose=2: one line per epoch without the bar.
"""
from __future__ import annotations

import sys
import time


def _fmt_value(v):
    return f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"


def _fmt_per_step(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def _fmt_eta(seconds):
    if seconds > 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds > 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{seconds:.0f}s"


class Progbar:
    def __init__(self, target, verbose=1, width=30, interval=0.05, stream=None):
        self.target = int(target)
        self.verbose = verbose
        self.width = width
        self.interval = interval
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", None)
        self.dynamic = bool(isatty and isatty()) or "ipykernel" in sys.modules
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_len = 0

    def due(self) -> bool:
        """Whether update(), not finalizing, would draw now: the training loop reads the running
        loss (which waits for a GPU) only then."""
        return (self.verbose == 1 and self.dynamic
                and time.perf_counter() - self._last_draw >= self.interval)

    def _values(self, values):
        return "".join(f" - {k}: {_fmt_value(v)}" for k, v in values.items())

    def update(self, current, values, finalize=False):
        """Show progress `current` of `target` steps with the running `values` (a dict)."""
        if not self.verbose:
            return
        now = time.perf_counter()
        elapsed = now - self.start
        if self.verbose == 2:
            if finalize:
                per_step = elapsed / max(current, 1)
                self.stream.write(f"{current}/{self.target} - {elapsed:.0f}s{self._values(values)} - "
                                  f"{_fmt_per_step(per_step)}\n")
                self.stream.flush()
            return
        if not finalize and (not self.dynamic or now - self._last_draw < self.interval):
            return
        self._last_draw = now
        digits = len(str(self.target))
        done = min(current / self.target, 1.0) if self.target else 1.0
        filled = int(self.width * done)
        if current >= self.target:
            bar = "=" * self.width
        else:
            bar = ("=" * (filled - 1) + ">") if filled else ""
            bar += "." * (self.width - len(bar))
        line = f"{current:{digits}d}/{self.target} [{bar}]"
        per_step = elapsed / max(current, 1)
        if finalize:
            line += f" - {elapsed:.0f}s {_fmt_per_step(per_step)}"
        else:
            line += f" - ETA: {_fmt_eta(per_step * (self.target - current))}"
        line += self._values(values)
        if self.dynamic:
            pad = max(self._last_len - len(line), 0)
            self.stream.write("\r" + line + " " * pad + ("\n" if finalize else ""))
            self._last_len = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
