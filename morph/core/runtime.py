"""Process-wide tuning applied by morph's own entry points (the CLI, benchmarks), never on import."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from typing import Iterator, Optional

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Let glibc reuse freed large blocks instead of returning them to the OS.

    Synthesis allocates activation tensors of tens of MB per layer; by default glibc maps each
    one fresh from the kernel, so every layer pays page faults for zeroed pages (measured: a
    134 MB tensor costs ~100 ms to allocate and touch vs ~20 ms when reused). Returns whether
    the setting took (only on glibc).
    """
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(1 << 30)) == 1
    return ok and mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1)) == 1


def _libc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


class Terminated(BaseException):
    """A stop asked for by SIGTERM; temp files are removed on the way out, as for any exception."""


_stop_requested = False
_deferring = 0


def request_stop(*_signal_args: object) -> None:
    """Signal handler for SIGTERM: stop now (Terminated) — except inside :func:`stop_points`, where raising
    could strand a half-started ffmpeg, so it only records the request for the next ``check_stop``."""
    global _stop_requested
    _stop_requested = True
    if not _deferring:
        raise Terminated()


@contextlib.contextmanager
def stop_points() -> Iterator[None]:
    """A block that calls ``check_stop`` between its units of work: SIGTERM waits for the next one."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    check_stop()


def check_stop() -> None:
    """Raise Terminated if a stop was requested."""
    if _stop_requested:
        raise Terminated()
