"""Text lines drawn into uint8 images with a built-in 3×5 pixel font (figures under a side-by-side PNG,
without an imaging library)."""

from __future__ import annotations

from typing import Any

import numpy as np

# Each glyph: five rows of three pixels ("#" on). Lower-case letters are drawn as capitals.
_FONT = {
    "0": ("###", "#.#", "#.#", "#.#", "###"), "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"), "3": ("###", "..#", ".##", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"), "5": ("###", "#..", "###", "..#", "###"),
    "6": ("###", "#..", "###", "#.#", "###"), "7": ("###", "..#", ".#.", ".#.", ".#."),
    "8": ("###", "#.#", "###", "#.#", "###"), "9": ("###", "#.#", "###", "..#", "###"),
    "A": (".#.", "#.#", "###", "#.#", "#.#"), "B": ("##.", "#.#", "##.", "#.#", "##."),
    "C": (".##", "#..", "#..", "#..", ".##"), "D": ("##.", "#.#", "#.#", "#.#", "##."),
    "E": ("###", "#..", "##.", "#..", "###"), "F": ("###", "#..", "##.", "#..", "#.."),
    "G": (".##", "#..", "#.#", "#.#", ".##"), "H": ("#.#", "#.#", "###", "#.#", "#.#"),
    "I": ("###", ".#.", ".#.", ".#.", "###"), "J": ("..#", "..#", "..#", "#.#", ".#."),
    "K": ("#.#", "#.#", "##.", "#.#", "#.#"), "L": ("#..", "#..", "#..", "#..", "###"),
    "M": ("#.#", "###", "###", "#.#", "#.#"), "N": ("##.", "#.#", "#.#", "#.#", "#.#"),
    "O": (".#.", "#.#", "#.#", "#.#", ".#."), "P": ("##.", "#.#", "##.", "#..", "#.."),
    "Q": (".#.", "#.#", "#.#", "##.", ".##"), "R": ("##.", "#.#", "##.", "#.#", "#.#"),
    "S": (".##", "#..", ".#.", "..#", "##."), "T": ("###", ".#.", ".#.", ".#.", ".#."),
    "U": ("#.#", "#.#", "#.#", "#.#", "###"), "V": ("#.#", "#.#", "#.#", "#.#", ".#."),
    "W": ("#.#", "#.#", "###", "###", "#.#"), "X": ("#.#", "#.#", ".#.", "#.#", "#.#"),
    "Y": ("#.#", "#.#", ".#.", ".#.", ".#."), "Z": ("###", "..#", ".#.", "#..", "###"),
    ".": ("...", "...", "...", "...", ".#."), ":": ("...", ".#.", "...", ".#.", "..."),
    "/": ("..#", "..#", ".#.", "#..", "#.."), "-": ("...", "...", "###", "...", "..."),
    "%": ("#.#", "..#", ".#.", "#..", "#.#"), "+": ("...", ".#.", "###", ".#.", "..."),
    "(": (".#.", "#..", "#..", "#..", ".#."), ")": (".#.", "..#", "..#", "..#", ".#."),
    " ": ("...", "...", "...", "...", "..."),
}
_GLYPHS = {c: np.array([[p == "#" for p in row] for row in rows]) for c, rows in _FONT.items()}


def text_mask(text: str, scale: int = 1) -> np.ndarray:
    """Boolean [5·scale, 4·scale·len(text)] mask of ``text`` (unknown characters as blanks)."""
    cells = [np.pad(_GLYPHS.get(c.upper(), _GLYPHS[" "]), ((0, 0), (0, 1))) for c in text] or [np.zeros((5, 0), bool)]
    return np.kron(np.concatenate(cells, axis=1), np.ones((scale, scale), bool)).astype(bool)


def add_caption(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """``image`` (uint8 [H, W, 3]) with ``lines`` of black text on white below it; wide images get larger text."""
    h, w, _ = image.shape
    scale = max(1, w // 200)
    line_h = 7 * scale
    out = np.full((h + line_h * len(lines) + scale, w, 3), 255, np.uint8)
    out[:h] = image
    for i, line in enumerate(lines):
        mask = text_mask(line, scale)[:, :w - 2 * scale]
        top, left = h + scale + i * line_h, 2 * scale
        out[top:top + mask.shape[0], left:left + mask.shape[1]][mask] = 0
    return out


__all__ = ["add_caption", "text_mask"]


def describe(row: dict[str, Any]) -> str:
    """One line of figures: ``PSNR 24.1 dB, LPIPS 0.213, identity 0.95 (distance 0.31), attributes 6/6``."""
    parts = [f"PSNR {row['psnr']:.1f} dB"]
    if "lpips" in row:
        parts.append(f"LPIPS {row['lpips']:.3f}")
    if "identity" in row:
        parts.append("identity: no face found" if row["identity"] is None else
                     f"identity {row['identity']:.2f} (distance {row['identity_distance']:.2f})"
                     if "identity_distance" in row else f"identity {row['identity']:.2f} (ArcFace)")
    if "attributes" in row:
        parts.append(f"attributes {row['attributes_agreeing']}/{row['attributes']}")
    if "psnr_before_tuning" in row:  # morph project --tune: the untuned network's figures too
        before = [f"PSNR {row['psnr_before_tuning']:.1f} dB"]
        before += [f"LPIPS {row['lpips_before_tuning']:.3f}"] if "lpips_before_tuning" in row else []
        before += [f"identity {row['identity_before_tuning']:.2f}"] if row.get("identity_before_tuning") is not None else []
        parts.append("before tuning " + " ".join(before))
    return ", ".join(parts)
