"""Keyframes added to and removed from a render's ``path:`` list, spliced into the YAML text like every other
studio edit: a new entry is written in the list's own style (``[a, b]`` or ``- a`` lines) and nothing else
in the file moves; a removed entry takes its separator (or its line) with it."""

from __future__ import annotations

from yaml.nodes import Node, SequenceNode

from morph.core.errors import MorphError
from morph.studio.edits import compose, find


def _path(text: str, render: str) -> SequenceNode:
    node = find(compose(text), ("renders", render, "path"))
    if not isinstance(node, SequenceNode):
        raise MorphError(f"renders.{render} has no path: list", hint="give it path: [A, B] to add keyframes")
    return node


def _end(text: str, item: Node) -> int:
    """Where an entry's own characters end (a block mapping's end mark runs on to the next token)."""
    start = item.start_mark.index
    return start + len(text[start:item.end_mark.index].rstrip())


def _line_end(text: str, index: int) -> int:
    """The index of the newline ending the line that holds ``index`` (or the end of the text)."""
    end = text.find("\n", index)
    return len(text) if end < 0 else end


def count(text: str, render: str) -> int:
    """Entries of render ``render``'s path as written (a path timed by beats cycles through them)."""
    return len(_path(text, render).value)


def insert(text: str, render: str, index: int, name: str) -> str:
    """``text`` with latent ``name`` made entry ``index`` (0 … len) of render ``render``'s path."""
    node = _path(text, render)
    items = node.value
    index = max(0, min(index, len(items)))
    if node.flow_style:
        if index < len(items):
            at = items[index].start_mark.index
            return text[:at] + f"{name}, " + text[at:]
        at = items[-1].end_mark.index
        return text[:at] + f", {name}" + text[at:]
    column = items[0].start_mark.column  # block: "- name" lines, the dash two columns left of the value
    if index < len(items):
        at = items[index].start_mark.index - items[index].start_mark.column
        return text[:at] + " " * (column - 2) + f"- {name}\n" + text[at:]
    end = _line_end(text, _end(text, items[-1]))
    return text[:end] + "\n" + " " * (column - 2) + f"- {name}" + text[end:]


def remove(text: str, render: str, index: int, at_least: int = 2) -> str:
    """``text`` without entry ``index`` of render ``render``'s path (a path keeps ``at_least`` entries: two, or
    one while an entry is being moved)."""
    node = _path(text, render)
    items = node.value
    if not 0 <= index < len(items):
        raise MorphError(f"renders.{render}.path has no entry {index}", hint="the page is out of date; reload it")
    if len(items) <= at_least:
        raise MorphError(f"renders.{render}.path needs at least two keyframes",
                         hint="add another first, or write around: NAME for one latent")
    item = items[index]
    if node.flow_style:
        if index + 1 < len(items):
            return text[:item.start_mark.index] + text[items[index + 1].start_mark.index:]
        return text[:_end(text, items[index - 1])] + text[_end(text, item):]
    start = item.start_mark.index - item.start_mark.column
    end = items[index + 1].start_mark.index - items[index + 1].start_mark.column if index + 1 < len(items) \
        else min(len(text), _line_end(text, _end(text, item)) + 1)
    return text[:start] + text[end:]


def move(text: str, render: str, index: int, by: int) -> str:
    """``text`` with entry ``index`` of render ``render``'s path moved ``by`` places (−1: one earlier), its text
    (a name, or ``NAME: {options}`` on one line) carried as written."""
    node = _path(text, render)
    items = node.value
    if not 0 <= index < len(items) or not 0 <= index + by < len(items):
        raise MorphError(f"renders.{render}.path has no place {index + by} to move entry {index} to",
                         hint="the page is out of date; reload it")
    item = items[index]
    written = text[item.start_mark.index:_end(text, item)]
    if "\n" in written:
        raise MorphError(f"renders.{render}.path entry {index} spans several lines",
                         hint="move it in an editor, or write its options on one line: NAME: {hold: 1s}")
    return insert(remove(text, render, index, at_least=1), render, index + by, written)
