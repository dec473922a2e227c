"""Progress for long work: a live bar on a terminal, plain timestamped log lines otherwise (cron, CI)."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Optional, TextIO


def log(message: str, stream: Optional[TextIO] = None) -> None:
    """One timestamped line on stderr (flushed at once, so logs interleave correctly under cron)."""
    stream = stream or sys.stderr
    stream.write(f"{datetime.now().isoformat(timespec='seconds')} {message}\n")
    stream.flush()


class Progress:
    """Counts units of work (frames); redraws a bar on a TTY, logs every ``interval`` seconds elsewhere."""

    def __init__(self, label: str, total: int, unit: str = "frames", quiet: bool = False,
                 interval: float = 10.0, stream: Optional[TextIO] = None):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty() and not quiet
        self.interval = interval
        self.done = 0
        self.start = time.monotonic()
        self._last = self.start

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.start, 1e-9)

    def _status(self) -> str:
        rate = self.rate()
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_text = f"{eta:.0f} s" if eta != float("inf") else "?"
        return f"{self.done}/{self.total} {self.unit}, {rate:.1f} {self.unit}/s, ETA {eta_text}"

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty:
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self._status()}   ")
            self.stream.flush()
        elif not self.quiet and now - self._last >= self.interval:
            log(f"{self.label}: {self._status()}", self.stream)
            self._last = now

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
