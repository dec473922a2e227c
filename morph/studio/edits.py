"""Edits to a scene's YAML text, spliced at the marks PyYAML gives for each node.

Why marks and not a round-trip library: the scene parser already composes PyYAML nodes, and a splice
replaces only the characters of the value that changed, so every other byte of the file (comments,
key order, aligned columns, flow or block style, quoting) stays as the user wrote it. A round-trip
emitter (ruamel.yaml) keeps comments but re-emits the lines it touches and normalises spacing, such
as the aligned ``ada:   {project: ...}`` column of the demo scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from morph.core.errors import MorphError

Key = Union[str, int]
TOP_FIRST = ("directions", "latents", "renders")  # new top-level keys go above the first of these


@dataclass(frozen=True)
class Edit:
    """Set the value at ``path`` (mapping keys and list indices from the root) to the YAML text ``text``."""

    path: tuple[Key, ...]
    text: str


def compose(text: str) -> Node:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise MorphError(f"{mark.line + 1}:{mark.column + 1}: {e.problem or e.context}",
                         hint="fix the YAML first (or revert)") from None
    except RecursionError:
        raise MorphError("the YAML nests too deeply to edit", hint="fix the file by hand (or revert)") from None
    if not isinstance(root, MappingNode):
        raise MorphError("the scene is not a mapping", hint="fix the YAML first (or revert)")
    return root


def _key_text(node: Node) -> Optional[str]:
    return str(node.value) if isinstance(node, ScalarNode) else None


MERGE_TAG = "tag:yaml.org,2002:merge"


def _child(node: Node, key: Key) -> Optional[Node]:
    """The value node under ``key`` (a mapping key, or an index into a list), written in ``node`` itself."""
    if isinstance(node, MappingNode):
        return next((v for k, v in node.value if k.tag != MERGE_TAG and _key_text(k) == str(key)), None)
    if isinstance(node, SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return node.value[key]
    return None


def _merged(node: Node, key: Key) -> Optional[Node]:
    """The value under ``key`` that ``node`` takes from its YAML merge keys (``<<: *anchor``), as YAML reads it:
    its own keys first, then each merged mapping in order."""
    if not isinstance(node, MappingNode):
        return None
    for k, v in node.value:
        for source in (v.value if isinstance(v, SequenceNode) else [v]) if k.tag == MERGE_TAG else ():
            found = _child(source, key) or _merged(source, key)
            if found is not None:
                return found
    return None


def _scalar(value: Key) -> str:
    """A key as YAML text (plain where YAML allows)."""
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip().removesuffix("...").strip()


def _nested(path: tuple[Key, ...], text: str) -> str:
    """``{a: {b: TEXT}}`` for path (a, b)."""
    for key in reversed(path):
        text = f"{{{_scalar(key)}: {text}}}"
    return text


def _line_end(text: str, index: int) -> int:
    """Where to append a line after the node ending at ``index``: the end of that node's last line."""
    if index > 0 and text[index - 1] == "\n":
        return index - 1
    end = text.find("\n", index)
    return len(text) if end < 0 else end


def _insert(text: str, parent: MappingNode, key: Key, value: str, top: bool) -> str:
    """``text`` with ``key: value`` added to mapping ``parent`` (flow: before its ``}``; block: as a new line)."""
    entry = f"{_scalar(key)}: {value}"
    if parent.flow_style:
        close = parent.end_mark.index - 1
        sep = ", " if parent.value else ""
        return text[:close].rstrip() + sep + entry + text[close:]
    if top:
        first = next((k for k, _ in parent.value if _key_text(k) in TOP_FIRST), None)
        if first is not None:
            at = first.start_mark.index - first.start_mark.column
            return text[:at] + entry + "\n" + text[at:]
    if not parent.value:
        raise MorphError(f"cannot add {key} to an empty block mapping", hint="edit the file by hand")
    indent = parent.value[0][0].start_mark.column
    at = _line_end(text, parent.value[-1][1].end_mark.index)
    return text[:at] + "\n" + " " * indent + entry + text[at:]


def find(root: Node, path: tuple[Key, ...]) -> Optional[Node]:
    """The node at ``path`` under ``root`` as the scene reads it (merge keys followed), or None where a key is
    missing."""
    node: Optional[Node] = root
    for key in path:
        node = node and (_child(node, key) or _merged(node, key))
    return node


def apply(text: str, edit: Edit) -> str:
    """``text`` with one edit made: the value's characters replaced, or the missing keys added."""
    node: Node = compose(text)
    for depth, key in enumerate(edit.path):
        child = _child(node, key)
        if child is None and depth < len(edit.path) - 1 and _merged(node, key) is not None:
            raise MorphError(f"{'.'.join(map(str, edit.path[:depth + 1]))} comes from a YAML merge key (<<), "
                             "which the file shares with another entry",
                             hint="edit it where the anchor is defined, or write it out in this entry")
        if child is None:  # a missing key, or one merged in: written here, it overrides the merged value
            if not isinstance(node, MappingNode):
                raise MorphError(f"{'.'.join(map(str, edit.path[:depth + 1]))} does not exist",
                                 hint="the page is out of date; reload it")
            return _insert(text, node, key, _nested(edit.path[depth + 1:], edit.text), depth == 0)
        node = child
    if not edit.text.strip():
        raise MorphError(f"{'.'.join(map(str, edit.path))}: no value given", hint="type a value")
    start, end = node.start_mark.index, node.end_mark.index
    if isinstance(node, ScalarNode) and node.style is None and end > start:
        end = start + len(text[start:end].rstrip())
    gap = " " if start == end and text[start - 1:start] == ":" else ""  # an empty value, as in ``key:``
    return text[:start] + gap + edit.text + text[end:]


def value_text(value: object) -> str:
    """A JSON value from the page as YAML flow text (numbers stay as typed, e.g. 2.5 not 2.5e+00)."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip().removesuffix("...").strip()


def mapping_text(items: dict[str, str]) -> str:
    """``{k: v, ...}`` flow text of already formatted values."""
    return "{" + ", ".join(f"{_scalar(k)}: {v}" for k, v in items.items()) + "}"
