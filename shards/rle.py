"""COCO RLE encode/decode of binary masks through pycocotools."""

from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def encode(masks: np.ndarray) -> list[dict]:
    """Encode boolean masks ``(N, H, W)`` to JSON-ready COCO RLEs (``counts`` as str)."""
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    if len(masks) == 0:
        return []
    return _encode_fortran(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))


def decode(rles: list[dict], height: int, width: int) -> np.ndarray:
    """Decode COCO RLEs to a boolean array ``(N, H, W)``; checks every RLE first."""
    check(rles, height, width)
    if not rles:
        return np.zeros((0, height, width), dtype=bool)
    decoded = mask_utils.decode([_as_bytes(r) for r in rles])
    return decoded.transpose(2, 0, 1).astype(bool)


def resize(rles: list[dict], src_size: tuple[int, int], size: tuple[int, int]) -> list[dict]:
    """Nearest-neighbour resize of COCO RLEs from ``src_size`` to ``size`` (both ``(H, W)``).

    Equals decoding the stack, resizing each mask (``cv2.INTER_NEAREST``) and encoding it
    again, but holds one full-size mask at a time, not the whole ``(N, H, W)`` stack (SA-1B:
    ~100 masks of 3.4 Mpx), and copies no array between layouts: 4x faster (bench/masks.py).
    """
    check(rles, *src_size)
    height, width = size
    out = np.empty((height, width, len(rles)), np.uint8, order="F")  # what encode() takes
    for i, rle in enumerate(rles):
        full = mask_utils.decode(_as_bytes(rle))  # (H, W), Fortran order
        # the transpose is C-ordered, as cv2 wants; nearest sampling commutes with it
        out[:, :, i] = cv2.resize(full.T, (height, width), interpolation=cv2.INTER_NEAREST).T
    return _encode_fortran(out) if rles else []


# EXIF orientation → what turns the stored pixels into the shown ones (as PIL's exif_transpose)
_ORIENT = {2: lambda m: m[:, ::-1], 3: lambda m: m[::-1, ::-1], 4: lambda m: m[::-1],
           5: lambda m: m.T, 6: lambda m: np.rot90(m, -1), 7: lambda m: m.T[::-1, ::-1],
           8: lambda m: np.rot90(m, 1)}


def orient(rles: list[dict], size: tuple[int, int], orientation: int) -> list[dict]:
    """RLEs of masks of the stored pixels ``(H, W)`` → the same masks of the image as its EXIF
    ``orientation`` (2-8) shows it; one full-size mask decoded at a time."""
    check(rles, *size)
    turn = _ORIENT[orientation]
    shown = turn(np.zeros(size, np.uint8)).shape
    out = np.empty((*shown, len(rles)), np.uint8, order="F")
    for i, rle in enumerate(rles):
        out[:, :, i] = turn(mask_utils.decode(_as_bytes(rle)))
    return _encode_fortran(out) if rles else []


def _encode_fortran(masks: np.ndarray) -> list[dict]:
    """Encode a Fortran-ordered ``uint8`` array ``(H, W, N)`` to JSON-ready COCO RLEs."""
    rles = mask_utils.encode(masks)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def area(rles: list[dict]) -> list[int]:
    """Foreground pixels of each RLE, from its run lengths (pycocotools' ``area`` overflows
    under numpy 2 for 256 masks or more)."""
    if not rles:
        return []
    runs, owner = _parse([r["counts"] for r in rles])
    odd = (np.arange(runs.size) - _group_starts(owner)) % 2 == 1  # foreground runs
    return np.bincount(owner[odd], weights=runs[odd], minlength=len(rles)).astype(int).tolist()


def grid_toggles(rles: list[dict], height: int, width: int, rows: np.ndarray,
                 cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every mask sampled at ``rows`` × ``cols`` of its ``height``-row image, straight from its
    run lengths, as the positions where its value flips.

    ``rows`` must be non-decreasing and ``cols`` increasing (sample a repeated column once and
    repeat it afterwards). The sampled grid is flattened column-major,
    ``q = j * len(rows) + i`` for row ``rows[i]`` and column ``cols[j]`` (COCO's own order), and
    mask ``m``'s value at ``q`` is the parity of the number of its toggles ``<= q``. Returns
    the toggles of all masks, ascending per mask, and how many each mask has. Nothing of
    size ``H x W`` is built: the work is a search of each run end among the sampled positions.
    Raises ``ValueError`` (as :func:`check`) for an RLE of another size or with bad counts.
    """
    if not rles:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    for i, rle in enumerate(rles):
        if list(rle["size"]) != [height, width]:
            raise ValueError(f"RLE {i} has size {rle['size']}, expected {[height, width]}")
    runs, owner = _parse([r["counts"] for r in rles])
    if (runs < 0).any():
        raise ValueError(f"RLE {owner[runs < 0][0]}: counts hold a negative run")
    per_mask = np.bincount(owner, minlength=len(rles))
    wrong = np.flatnonzero(per_mask == 0)
    if not wrong.size:
        last = np.cumsum(per_mask) - 1  # each mask's last run
        ends = np.cumsum(runs)
        ends -= np.repeat(np.r_[0, ends[last[:-1]]], per_mask)  # run ends within each mask
        wrong = np.flatnonzero(ends[last] != height * width)
    if wrong.size:
        raise ValueError(f"RLE {wrong[0]}: counts do not cover {height * width} pixels")
    inner = np.ones(runs.size, bool)
    inner[last] = False  # a mask's last run ends at H*W: no flip there
    ends, owner = ends[inner], owner[inner]
    # the sampled position q of an end at (column c, row r) counts the samples before it
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    sampled = np.zeros(width + 1, bool)
    sampled[cols] = True
    c, r = np.divmod(ends, height)
    q = (np.searchsorted(cols, np.arange(width + 1))[c] * rows.size
         + np.where(sampled[c], np.searchsorted(rows, np.arange(height))[r], 0))
    inside = q < rows.size * cols.size
    q, owner = q[inside], owner[inside]
    # equal toggles of one mask cancel in pairs: keep one of each odd-sized group
    new = np.r_[True, (q[1:] != q[:-1]) | (owner[1:] != owner[:-1])]
    group = np.cumsum(new) - 1
    keep = np.flatnonzero(new)[np.bincount(group) % 2 == 1]
    return q[keep], np.bincount(owner[keep], minlength=len(rles))


def bbox(rles: list[dict]) -> list[list[float]]:
    """XYWH boxes, as in SA-1B / COCO."""
    if not rles:
        return []
    return [[float(v) for v in box] for box in mask_utils.toBbox([_as_bytes(r) for r in rles])]


def iou(a: list[dict], b: list[dict]) -> np.ndarray:
    """IoU of every RLE of ``a`` with every RLE of ``b``: ``(len(a), len(b))``."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_utils.iou([_as_bytes(r) for r in a], [_as_bytes(r) for r in b],
                                     [0] * len(b)))


def check(rles: list[dict], height: int, width: int) -> None:
    """Raise ``ValueError`` unless every RLE has this size and run lengths that cover it
    exactly: pycocotools decodes inconsistent counts past the end of its buffer (no bounds
    check), so a corrupt annotation must be refused before it gets there."""
    for i, rle in enumerate(rles):
        if list(rle["size"]) != [height, width]:
            raise ValueError(f"RLE {i} has size {rle['size']}, expected {[height, width]}")
    if not rles:
        return
    runs, owner = _parse([rle["counts"] for rle in rles])  # one numpy pass for all masks
    if (runs < 0).any():
        raise ValueError(f"RLE {owner[runs < 0][0]}: counts hold a negative run")
    covered = np.zeros(len(rles), np.int64)
    np.add.at(covered, owner, runs)
    wrong = np.flatnonzero(covered != height * width)
    if wrong.size:
        i = wrong[0]
        raise ValueError(f"RLE {i}: counts cover {covered[i]} pixels, expected {height * width}")


def run_lengths(counts: bytes | str) -> np.ndarray:
    """The run lengths of one compressed COCO RLE string (pycocotools' ``rleFrString``)."""
    return _parse([counts])[0]


def _parse(counts: list[bytes | str]) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of compressed COCO RLE strings, all in one pass, and the index of the string
    each run belongs to. Each number is 5-bit groups, low first, in characters offset by 48,
    with 0x20 set on all but its last group and 0x10 of the last the sign; from the fourth
    number of a string on, each is stored as its difference to the number two before."""
    raws = [c.encode() if isinstance(c, str) else c for c in counts]
    for raw in raws:
        if not isinstance(raw, bytes):
            raise TypeError(f"counts must be a compressed RLE string, got {type(raw).__name__}")
    string_end = np.cumsum([len(r) for r in raws])  # one past each string's last character
    c = np.frombuffer(b"".join(raws), np.uint8) - np.uint8(48)  # wraps: a bad byte is > 63
    more = (c & 0x20) != 0  # another group of this number follows
    bad = c > 63
    last = string_end[string_end > np.r_[0, string_end[:-1]]] - 1
    bad[last] |= more[last]  # a string must end on a number's last group
    if bad.any():
        which = np.searchsorted(string_end, np.flatnonzero(bad)[0], side="right")
        raise ValueError(f"RLE {which}: counts is not a compressed COCO RLE string")
    if c.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    ends = np.flatnonzero(~more)
    done = np.cumsum(~more)  # numbers ended up to each character
    per_string = np.diff(np.r_[0, np.r_[0, done][string_end]])
    owner = np.repeat(np.arange(len(raws)), per_string)
    starts = np.r_[0, ends[:-1] + 1]
    groups = ends - starts + 1
    if groups.max() > 12:
        raise ValueError(f"RLE {owner[groups > 12][0]}: counts hold a run longer than 2^60")
    low = (c & 0x1F).astype(np.int64)
    x = low[ends] << (5 * (groups - 1))
    inner = np.flatnonzero(more)  # the lower groups of the (few) numbers of several groups
    if inner.size:
        number = done[inner]
        np.add.at(x, number, low[inner] << (5 * (inner - starts[number])))
    x -= ((c[ends] & 0x10) != 0).astype(np.int64) << (5 * groups)  # the sign bit
    # undo the differences: x[m] += x[m - 2] for m >= 3 of each string, as cumulative sums
    # over every other number, minus their value just before the string's chain starts
    index = np.arange(x.size) - np.repeat(np.cumsum(per_string) - per_string, per_string)
    total = np.empty_like(x)
    np.cumsum(x[0::2], out=total[0::2])
    np.cumsum(x[1::2], out=total[1::2])
    before = np.arange(x.size) - index - (index & 1)  # the string's first number, or one before
    chained = total - np.where(before >= 0, total[np.maximum(before, 0)], 0)
    return np.where(index == 0, x, chained), owner


def _group_starts(owner: np.ndarray) -> np.ndarray:
    """For a non-decreasing array of group ids, the index where each element's group starts."""
    first = np.r_[True, owner[1:] != owner[:-1]] if owner.size else np.zeros(0, bool)
    return np.flatnonzero(first)[np.cumsum(first) - 1]


def _as_bytes(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode()
    return {"size": list(rle["size"]), "counts": counts}
