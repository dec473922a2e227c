"""Undo and redo for the studio: the scene's working text before each edit, so an undo gives back the text
byte for byte (comments, spacing and all) rather than an inverse edit that could differ in how it is written.

A slider drag sends many edits; the page tags the edits of one gesture with the same ``gesture`` id and they
make one undo step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

DEPTH = 200  # undo steps kept (texts of at most MAX_SCENE_BYTES each)


@dataclass
class History:
    """Texts to go back to (``undo``) and forward to (``redo``)."""

    undo_stack: list[str] = field(default_factory=list)
    redo_stack: list[str] = field(default_factory=list)
    gesture: Optional[str] = None

    def record(self, before: str, gesture: Optional[str] = None) -> None:
        """An edit is about to replace ``before``; edits of the same ``gesture`` (not None) are one step."""
        if gesture is None or gesture != self.gesture or not self.undo_stack:
            self.undo_stack.append(before)
            del self.undo_stack[:-DEPTH]
        self.gesture = gesture
        self.redo_stack.clear()

    def undo(self, current: str) -> Optional[str]:
        """The text before the last step (``current`` kept for redo), or None when there is nothing to undo."""
        return self._move(self.undo_stack, self.redo_stack, current)

    def redo(self, current: str) -> Optional[str]:
        """The text the last undo went back from, or None."""
        return self._move(self.redo_stack, self.undo_stack, current)

    def _move(self, source: list[str], target: list[str], current: str) -> Optional[str]:
        self.gesture = None
        if not source:
            return None
        target.append(current)
        return source.pop()

    def counts(self) -> dict:
        return {"undo": len(self.undo_stack), "redo": len(self.redo_stack)}
