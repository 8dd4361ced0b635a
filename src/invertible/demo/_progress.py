"""A dependency-free progress bar with the running loss, written to stderr."""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``label [#####.....]  40%  epoch 40/100  step 80/200  loss 2.345 bits/dim  3.1 s``.

    On a terminal the line is redrawn in place (at most ten times a second); elsewhere (a log
    file, a captured stream) a line is written at every tenth of the run, so logs stay short.
    The loss shown is an exponential moving average of the values passed to `update`.

    Args:
        total: number of `update` calls expected.
        label: text before the bar.
        unit: unit of the loss shown after it.
        stream: where to write (default ``sys.stderr``); ``None`` keeps the bar silent.
        width: characters inside the brackets.
        epochs: when > 0, the ``total`` steps make this many epochs and the line shows the
            epoch too, so a run announced in epochs reads the same in its progress.
    """

    def __init__(
        self,
        total: int,
        label: str = "training",
        unit: str = "",
        stream: Optional[TextIO] = sys.stderr,
        width: int = 24,
        epochs: int = 0,
    ) -> None:
        self.total = max(int(total), 1)
        self.label = label
        self.unit = unit
        self.stream = stream
        self.width = width
        self.epochs = epochs
        self.count = 0
        self.loss = float("nan")
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._next_log = 0
        self._drawn = 0

    def update(self, loss: float) -> None:
        """Count one step with loss ``loss`` and redraw if it is time to."""
        self.count += 1
        self.loss = loss if self.count == 1 else 0.9 * self.loss + 0.1 * loss
        if self.stream is None:
            return
        if self._tty:
            now = time.perf_counter()
            if now - self._last_draw >= 0.1 or self.count == self.total:
                self._last_draw = now
                self._redraw()
        elif self.count * 10 >= self._next_log * self.total:
            self._next_log = self.count * 10 // self.total + 1
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def line(self) -> str:
        """The current state as one line of text."""
        done = min(self.count / self.total, 1.0)
        filled = round(done * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        unit = f" {self.unit}" if self.unit else ""
        seconds = time.perf_counter() - self._start
        epoch = -(-self.count * self.epochs // self.total)  # ceiling: the epoch under way
        epochs = f"epoch {epoch}/{self.epochs}  " if self.epochs > 0 else ""
        return (
            f"{self.label} [{bar}] {100 * done:3.0f}%  {epochs}step {self.count}/{self.total}  "
            f"loss {self.loss:.3f}{unit}  {seconds:.1f} s"
        )

    def _redraw(self, end: str = "") -> None:
        """Overwrite the terminal line, padding over a longer previous one."""
        if self.stream is None:
            return
        text = self.line()
        self.stream.write("\r" + text.ljust(self._drawn) + end)
        self.stream.flush()
        self._drawn = len(text)

    def close(self) -> None:
        """End the bar's line (terminal only)."""
        if self.stream is not None and self._tty:
            self._redraw("\n")
