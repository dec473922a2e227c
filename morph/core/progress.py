"""Progress for long work and morph's log lines, shown the way the caller asked.

Library choices: the bars are ``rich``'s (already installed with typer: width-aware, several at once,
a live display in Jupyter); the lines go through the standard ``logging`` module under the logger
``"morph"``, so a program using morph as a library can silence, filter or redirect them as it does any
other library's. :func:`configure` is what the ``morph`` command and :mod:`morph.api` call; it leaves a
logger the application configured alone.

Modes (``morph … --progress MODE``):

- ``bar``: a live bar per task (a terminal, a notebook), log lines above them;
- ``lines``: timestamped lines (UTC, ISO 8601) on stderr: a task's first figures after 2 s, then every
  ``interval`` seconds (cron, CI, a log file);
- ``json``: one JSON object per line on stderr, for programs (the studio): ``{"event": "progress",
  "task", "done", "total", "unit", "rate", "eta_s"}`` at most every half second and when a task ends,
  ``{"event": "log", "time", "level", "message"}`` for each log line;
- ``quiet``: warnings and errors only;
- ``auto``: ``bar`` on a terminal or in Jupyter, ``lines`` elsewhere.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime, timezone
from typing import Optional, TextIO

logger = logging.getLogger("morph")

MODES = ("auto", "bar", "lines", "json", "quiet")
FIRST_LINE_S = 2.0    # lines mode: a long task says how it goes this soon after it starts
JSON_EVERY_S = 0.5    # json mode: at most this often per task

_mode = "lines"
_configured = False   # set by an explicit configure() (the command line); the API's calls leave it alone
_bars = None          # the shared rich Progress while any bar is live


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Handler(logging.Handler):
    """Writes each record to the current ``sys.stderr`` (looked up per line, so a redirected or captured
    stderr gets them), as a timestamped line or, in json mode, as a JSON object."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if _mode == "json":
                text = json.dumps({"event": "log", "time": _now(), "level": record.levelname.lower(),
                                   "message": record.getMessage()})
            else:
                text = f"{_now()} {record.getMessage()}"
            if _bars is not None:
                _bars.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                sys.stderr.write(text + "\n")
                sys.stderr.flush()
        except Exception:  # a logging call must never break a render
            self.handleError(record)


def _interactive() -> bool:
    """Whether a live bar can be drawn: stderr is a terminal, or this is a Jupyter kernel."""
    from rich.console import Console

    console = Console(stderr=True)
    return console.is_terminal or console.is_jupyter


def configure(mode: str = "auto", *, only_if_unset: bool = False) -> str:
    """Route morph's progress and log lines: ``mode`` is one of :data:`MODES`. With ``only_if_unset`` (the
    Python API) a mode the command line chose stands, and log records go to the application's own handlers
    when it has set up logging. Returns the mode in force."""
    global _mode, _configured
    if mode not in MODES:
        from morph.core.errors import MorphError

        raise MorphError(f"unknown progress mode {mode!r}", "--progress", f"use one of {', '.join(MODES)}")
    ours = [h for h in logger.handlers if isinstance(h, _Handler)]
    theirs = [h for h in logger.handlers if not isinstance(h, _Handler)] + logging.getLogger().handlers
    if only_if_unset and _configured:  # the command line chose
        return _mode
    _configured = not only_if_unset
    _mode = ("bar" if _interactive() else "lines") if mode == "auto" else mode
    if ours or not (only_if_unset and theirs):  # unless the application routes logging itself
        if not ours:
            logger.addHandler(_Handler())
        logger.setLevel(logging.WARNING if _mode == "quiet" else logging.INFO)
        logger.propagate = False
    return _mode


def mode() -> str:
    """How progress is shown now: bar, lines, json or quiet (see ``MODES``)."""
    _default()
    return _mode


def log(message: str, stream: Optional[TextIO] = None) -> None:
    """One line of news about long work: ``logging.INFO`` on the ``morph`` logger, or a timestamped line
    written straight to ``stream`` when the caller collects its own lines."""
    if stream is None or stream is sys.stderr:
        _default()
        logger.info(message)
    else:
        stream.write(f"{_now()} {message}\n")
        stream.flush()


def warn(message: str) -> None:
    """A line the user should read even with --quiet (``logging.WARNING``)."""
    _default()
    logger.warning(message)


def fatal(line: str) -> None:
    """The one line a failed command ends with, on stderr: as it is, or ``{"event": "error", "message"}`` in
    json mode (so a program reading the stream sees why it ended)."""
    sys.stderr.write((json.dumps({"event": "error", "message": line}) if _mode == "json" else line) + "\n")
    sys.stderr.flush()


def _default() -> None:
    """Before anyone called :func:`configure`: the mode a script gets (``auto``), unless the application
    has set up logging itself."""
    if not _configured and not any(isinstance(h, _Handler) for h in logger.handlers):
        configure("auto", only_if_unset=True)


class Progress:
    """Counts units of work (frames, steps, MiB) of one task, shown in the configured mode.

    ``total`` may be set after construction (a cluster learns it late); ``quiet`` silences this task alone.
    """

    def __init__(self, label: str, total: int, unit: str = "frames", quiet: bool = False,
                 interval: float = 10.0, stream: Optional[TextIO] = None):
        _default()
        self.label, self.unit, self.interval = label, unit, interval
        self.quiet = quiet or _mode == "quiet"
        self.stream = stream  # lines mode only: where they go instead of the log
        self.done = 0
        self.start = time.monotonic()
        self._next = self.start + (JSON_EVERY_S if _mode == "json" else FIRST_LINE_S)
        self._total = total
        self._task = None
        if not self.quiet and _mode == "bar":
            self._task = _bar_add(label, total, unit)

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._total = value
        if self._task is not None:
            _bars.update(self._task, total=value)

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.start, 1e-9)

    def eta(self) -> Optional[float]:
        """Seconds left at the rate so far; None before any unit is done or without a total."""
        rate = self.rate()
        return (self._total - self.done) / rate if rate > 0 and self._total else None

    def _status(self) -> str:
        eta = self.eta()
        return (f"{self.done}/{self._total} {self.unit}, {self.rate():.1f} {self.unit}/s, "
                f"ETA {'?' if eta is None else f'{eta:.0f} s'}")

    def _json(self) -> None:
        eta = self.eta()
        sys.stderr.write(json.dumps({"event": "progress", "task": self.label, "done": self.done,
                                     "total": self._total, "unit": self.unit, "rate": round(self.rate(), 3),
                                     "eta_s": None if eta is None else round(eta, 1)}) + "\n")
        sys.stderr.flush()

    def advance(self, n: int) -> None:
        self.done += n
        if self.quiet:
            return
        if self._task is not None:
            _bars.update(self._task, completed=self.done)
            return
        now = time.monotonic()
        if now >= self._next:
            self._next = now + (JSON_EVERY_S if _mode == "json" else self.interval)
            if _mode == "json":
                self._json()
            else:
                log(f"{self.label}: {self._status()}", self.stream)

    def close(self) -> None:
        """End the task: its bar is removed (the log line the caller writes next says how it went)."""
        if self.quiet:
            return
        if self._task is not None:
            _bar_remove(self._task)
            self._task = None
        elif _mode == "json":
            self._json()


def _bar_add(label: str, total: int, unit: str):
    """A task on the shared live display, started with its first task."""
    global _bars
    if _bars is None:
        from rich.console import Console
        from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as Bars

        # "done/total unit" as one plain column: a program reading the terminal finds "12/90 frames"
        _bars = Bars(TextColumn("{task.description}"), BarColumn(),
                     TextColumn("{task.completed}/{task.total} {task.fields[unit]}", markup=False),
                     TaskProgressColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        _bars.start()
    return _bars.add_task(label, total=total, unit=unit)


def _bar_remove(task) -> None:
    """Drop a finished task; the display stops with its last task."""
    global _bars
    _bars.remove_task(task)
    if not _bars.tasks:
        _bars.stop()
        _bars = None


__all__ = ["MODES", "Progress", "configure", "fatal", "log", "logger", "warn"]
