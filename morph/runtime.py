"""Process-wide tuning applied by morph's own entry points (the CLI, benchmarks), never on import."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Let glibc reuse freed large blocks instead of returning them to the OS.

    Synthesis allocates activation tensors of tens of MB per layer; by default glibc maps each
    one fresh from the kernel, so every layer pays page faults for zeroed pages (measured: a
    134 MB tensor costs ~100 ms to allocate and touch vs ~20 ms when reused). Returns whether
    the setting took (only on glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(1 << 30)) == 1
    return ok and mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1)) == 1


class Terminated(BaseException):
    """A stop asked for by SIGTERM, raised at the next safe point so every temp file is cleaned up."""


_stop_requested = False


def request_stop(*_signal_args: object) -> None:
    """Signal handler for SIGTERM: only records the request (raising inside arbitrary code could strand
    a half-started ffmpeg or a temp file); long loops call ``check_stop`` between units of work."""
    global _stop_requested
    _stop_requested = True


def check_stop() -> None:
    """Raise Terminated if a stop was requested."""
    if _stop_requested:
        raise Terminated()
