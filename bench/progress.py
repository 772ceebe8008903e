"""A one-line progress bar on stderr (a line per tenth when stderr is not a terminal)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, total: int, width: int = 30) -> None:
        self.label, self.total, self.width = label, total, width
        self.done = 0
        self._began = time.perf_counter()
        self._tty = sys.stderr.isatty()
        self._last_tenth = -1

    def step(self, _: object = None) -> None:
        self.done += 1
        tenth = self.done * 10 // max(1, self.total)
        if self._tty or tenth != self._last_tenth or self.done == self.total:
            self._last_tenth = tenth
            self._draw()

    def _draw(self) -> None:
        filled = self.width * self.done // max(1, self.total)
        rate = self.done / max(1e-9, time.perf_counter() - self._began)
        line = (
            f"{self.label:<14} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{self.done}/{self.total} {rate:6.1f}/s"
        )
        end = "\n" if self.done == self.total or not self._tty else ""
        print(f"\r{line}", end=end, file=sys.stderr, flush=True)
