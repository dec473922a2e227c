"""The globals a pickle names, listed without loading it: what :mod:`morph.checkpoints.detect` classifies a
file by (a network pickle, a TensorFlow one, something that would run code). Safety never rests on this
scan: loading goes through :mod:`morph.checkpoints.safe_pickle`'s allow-list."""

from __future__ import annotations

import copyreg
import pickletools
from typing import Iterator, Optional

from morph.checkpoints.safe_pickle import CappedReader

_STRING_OPS = frozenset({
    "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
    "STRING", "BINSTRING", "SHORT_BINSTRING",
})
_NO_PUSH_OPS = frozenset({"PROTO", "FRAME", "MARK", "STOP"})


def iter_globals(file) -> Iterator[tuple[str, str]]:
    """Yield the ``(module, name)`` of every GLOBAL/INST/STACK_GLOBAL/EXT opcode, in stream order.

    Uses :func:`pickletools.genops`, which decodes opcodes without executing anything. For
    ``STACK_GLOBAL`` the two operands are recovered by tracking string pushes and the memo; this
    is an approximation of the real stack that is exact for pickler-written files. It only
    classifies files: safety comes from :class:`RestrictedUnpickler`, not from this scan.
    Raises ``ValueError`` (from genops) on a truncated or corrupt stream.
    """
    memo: dict[int, str] = {}
    memo_count = 0
    top: list[Optional[str]] = [None, None]  # the last two pushed values, when they are strings

    def push(value):
        top.append(value if isinstance(value, str) else None)
        del top[0]

    for opcode, arg, _pos in pickletools.genops(CappedReader(file)):
        op = opcode.name
        if op in _NO_PUSH_OPS:
            continue
        if op == "MEMOIZE":
            if top[-1] is not None:
                memo[memo_count] = top[-1]
            memo_count += 1
        elif op in ("PUT", "BINPUT", "LONG_BINPUT"):
            if top[-1] is not None:
                memo[arg] = top[-1]
            else:
                memo.pop(arg, None)
        elif op in ("GET", "BINGET", "LONG_BINGET"):
            push(memo.get(arg))
        elif op == "DUP":
            push(top[-1])
        elif op in _STRING_OPS:
            push(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        elif op in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            yield module, name
            push(None)
        elif op == "STACK_GLOBAL":
            module, name = top[-2], top[-1]
            yield (module if module is not None else "<unknown>"), (name if name is not None else "<unknown>")
            push(None)
        elif op in ("EXT1", "EXT2", "EXT4"):
            key = copyreg._inverted_registry.get(arg)  # harmless lookup of (module, name)
            yield key if key is not None else ("<extension>", str(arg))
            push(None)
        else:
            push(None)
