"""Pictures for looking at a derainer: attention heat maps, the paper-style comparison figure and the grid.

All functions take and return ``uint8`` H x W x 3 arrays (or float images in [0, 1], converted with
:func:`to_uint8`), so every panel of a figure is the exact pixels written to disk elsewhere.

* :func:`compare_figure`: one input as ``rain | derained | attention [| ground truth]``, each panel at full
  resolution with a caption strip underneath (and, with a ground truth, PSNR / SSIM of the rain and of the
  derained image under a named protocol), the layout of the paper's Figures 6-8. Images narrower than
  :data:`MIN_PANEL_WIDTH` are enlarged by a whole factor (each pixel repeated), so the captions fit.
* :func:`comparison_grid`: several methods on the same inputs; one row per input, one column per method
  (``Rain | method 1 | ... | Ground truth``), column labels on top, cells scaled to a common width.

Both return ``(image, boxes)`` where ``boxes`` maps each panel's name (row-qualified in the grid:
``"<row>/<column>"``) to its ``(top, left, bottom, right)`` pixel box, so tests and notebooks can find panels.
Captions are fitted to their strip at any size (:func:`fit_text`): wrapped at spaces, the font made smaller
down to :data:`MIN_FONT_SIZE`, and a word wider than the strip even then broken.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from src.metrics.protocols import to_uint8_image

GAP = 8  # white pixels between panels
MIN_PANEL_WIDTH = 160  # compare_figure enlarges narrower images by a whole factor so their captions fit
MIN_FONT_SIZE = 8
MARGIN = 2  # pixels kept free of text at each side of a caption strip
BACKGROUND = 255
TEXT_COLOUR = (0, 0, 0)

Box = tuple[int, int, int, int]


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Float image on [0, 1] -> uint8 by the suite's one 8-bit rule (:func:`src.metrics.protocols.to_uint8_image`:
    clipped, x255, rounded half up); uint8 input is returned unchanged."""
    if img.dtype == np.uint8:
        return img
    return to_uint8_image(img)


def heat_map(att: np.ndarray) -> np.ndarray:
    """H x W map in [0, 1] -> uint8 H x W x 3 with matplotlib's 'inferno' colour map."""
    return to_uint8_image(colormaps["inferno"](np.clip(att, 0, 1))[..., :3])


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def _wrap(line: str, font, width: float) -> list[str]:
    """``line`` broken at spaces into lines no wider than ``width`` (a longer word is broken anywhere)."""
    words: list[str] = []
    for word in line.split(" "):
        while len(word) > 1 and font.getlength(word) > width:
            cut = max((k for k in range(1, len(word)) if font.getlength(word[:k]) <= width), default=1)
            words.append(word[:cut])
            word = word[cut:]
        words.append(word)
    out: list[str] = []
    for word in words:
        if out and font.getlength(f"{out[-1]} {word}") <= width:
            out[-1] = f"{out[-1]} {word}"
        else:
            out.append(word)
    return out or [""]


def fit_text(width: int, lines: Sequence[str], font_size: int) -> tuple[list[str], ImageFont.ImageFont, int]:
    """(wrapped lines, font, size) that fit a strip ``width`` pixels wide: the largest size up to ``font_size``
    (at least :data:`MIN_FONT_SIZE`) at which every word fits, the lines wrapped at spaces to that width."""
    room = max(width - 2 * MARGIN, 1)
    for size in range(max(font_size, MIN_FONT_SIZE), MIN_FONT_SIZE - 1, -1):
        font = _font(size)
        if all(font.getlength(word) <= room for line in lines for word in line.split(" ")):
            break
    return [part for line in lines for part in _wrap(line, font, room)], font, size


def text_strip(width: int, lines: Sequence[str], font_size: int, n_lines: int = 0) -> np.ndarray:
    """A white strip ``width`` pixels wide with ``lines`` centred in black, one under the other, fitted to the
    width (:func:`fit_text`); at least ``n_lines`` lines high."""
    lines, font, size = fit_text(width, lines, font_size)
    line_h = int(size * 1.3)
    strip = Image.new("RGB", (max(width, 1), line_h * max(len(lines), n_lines, 1) + 4), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(strip)
    for k, line in enumerate(lines):
        tw = draw.textlength(line, font=font)
        draw.text(((width - tw) / 2, 2 + k * line_h), line, fill=TEXT_COLOUR, font=font)
    return np.asarray(strip)


def caption_strips(width: int, captions: Sequence[Sequence[str]], font_size: int) -> list[np.ndarray]:
    """One :func:`text_strip` per caption, side by side material: the same font size and height for all."""
    size = min(fit_text(width, c, font_size)[2] for c in captions)
    n_lines = max(len(fit_text(width, c, size)[0]) for c in captions)
    return [text_strip(width, c, size, n_lines) for c in captions]


def _font_size(width: int) -> int:
    return int(np.clip(width / 22, 10, 40))


def score_lines(scores: Optional[dict], protocol: str) -> list[str]:
    if not scores:
        return []
    return [f"{scores['psnr']:.2f} dB / {scores['ssim']:.4f}"]


def compare_figure(
    rain: np.ndarray,
    derained: np.ndarray,
    attention: Optional[np.ndarray] = None,
    gt: Optional[np.ndarray] = None,
    scores: Optional[dict] = None,
    protocol: Optional[str] = None,
    title: Optional[str] = None,
) -> tuple[np.ndarray, dict[str, Box]]:
    """``rain | derained | attention [| ground truth]`` side by side, captions below.

    ``attention``: H x W map in [0, 1] (drawn as a heat map) or None (no panel, e.g. models without attention).
    ``scores``: ``{"rain": {"psnr", "ssim"}, "derained": {...}}`` against ``gt`` under ``protocol``; written
    under those panels, and the protocol named in the ground truth's caption.
    """
    panels: list[tuple[str, np.ndarray, list[str]]] = [
        ("rain", to_uint8(rain), ["Rain"] + score_lines((scores or {}).get("rain"), protocol or "")),
        (
            "derained",
            to_uint8(derained),
            [title or "Derained"] + score_lines((scores or {}).get("derained"), protocol or ""),
        ),
    ]
    if attention is not None:
        panels.append(("attention", heat_map(attention), ["Attention"]))
    if gt is not None:
        caption = ["Ground truth"] + ([f"PSNR / SSIM: protocol {protocol}"] if scores and protocol else [])
        panels.append(("gt", to_uint8(gt), caption))
    h, w = panels[0][1].shape[:2]
    for name, img, _ in panels:
        if img.shape[:2] != (h, w):
            raise ValueError(f"compare_figure: panel {name!r} is {img.shape[:2]}, the rain image is {(h, w)}")
    scale = -(-MIN_PANEL_WIDTH // w) if w < MIN_PANEL_WIDTH else 1
    if scale > 1:
        panels = [(name, img.repeat(scale, 0).repeat(scale, 1), c) for name, img, c in panels]
        h, w = h * scale, w * scale
    captions = caption_strips(w, [c for _, _, c in panels], _font_size(w))
    cap_h = captions[0].shape[0]
    canvas = np.full((h + cap_h, len(panels) * w + (len(panels) - 1) * GAP, 3), BACKGROUND, np.uint8)
    boxes = {}
    for k, ((name, img, _), cap) in enumerate(zip(panels, captions)):
        left = k * (w + GAP)
        canvas[:h, left : left + w] = img
        canvas[h:, left : left + w] = cap
        boxes[name] = (0, left, h, left + w)
    return canvas, boxes


def _resize(img: np.ndarray, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    if w == width:
        return img
    height = max(1, round(h * width / w))
    return np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.LANCZOS))


def comparison_grid(
    rows: Sequence[tuple[str, Sequence[tuple[str, np.ndarray, Optional[dict]]]]],
    cell_width: int = 320,
    protocol: Optional[str] = None,
) -> tuple[np.ndarray, dict[str, Box]]:
    """Methods side by side on the same inputs.

    ``rows``: ``[(row_name, [(column_label, image, scores_or_None), ...]), ...]``; every row must list the same
    column labels in the same order. Images are scaled to ``cell_width`` (aspect kept); scores
    (``{"psnr", "ssim"}``) are written under their cell. The column labels head the grid; the row name is
    written beside the first cell's caption. With ``protocol``, a footer names it.
    """
    if not rows:
        raise ValueError("comparison_grid: no rows")
    labels = [c[0] for c in rows[0][1]]
    for name, cells in rows:
        if [c[0] for c in cells] != labels:
            raise ValueError(f"comparison_grid: row {name!r} has columns {[c[0] for c in cells]}, expected {labels}")
    size = _font_size(cell_width)
    header = caption_strips(cell_width, [[label] for label in labels], size)
    width = len(labels) * cell_width + (len(labels) - 1) * GAP
    blocks = [np.concatenate(_with_gaps(header, axis=1), axis=1)]
    boxes: dict[str, Box] = {}
    top = blocks[0].shape[0]
    any_scores = any(c[2] for _, cells in rows for c in cells)
    for name, cells in rows:
        imgs = [_resize(to_uint8(img), cell_width) for _, img, _ in cells]
        h = imgs[0].shape[0]
        for (label, _, _), img in zip(cells, imgs):
            if img.shape[0] != h:
                raise ValueError(f"comparison_grid: row {name!r}: column {label!r} has another aspect ratio")
        lines = [
            [name if k == 0 else ""] + ((score_lines(scores, protocol or "") or [""]) if any_scores else [])
            for k, (_, _, scores) in enumerate(cells)
        ]
        caps = caption_strips(cell_width, lines, int(size * 0.8))
        row = np.concatenate(_with_gaps([np.concatenate([i, c], axis=0) for i, c in zip(imgs, caps)], axis=1), axis=1)
        for k, (label, _, _) in enumerate(cells):
            left = k * (cell_width + GAP)
            boxes[f"{name}/{label}"] = (top, left, top + h, left + cell_width)
        blocks += [np.full((GAP, width, 3), BACKGROUND, np.uint8), row]
        top += GAP + row.shape[0]
    if protocol and any_scores:
        blocks.append(
            text_strip(width, [f"PSNR (dB) / SSIM against the ground truth, protocol {protocol}"], int(size * 0.8))
        )
    return np.concatenate(blocks, axis=0), boxes


def _with_gaps(parts: list[np.ndarray], axis: int) -> list[np.ndarray]:
    out = []
    for k, p in enumerate(parts):
        if k:
            shape = list(p.shape)
            shape[axis] = GAP
            out.append(np.full(shape, BACKGROUND, np.uint8))
        out.append(p)
    return out
