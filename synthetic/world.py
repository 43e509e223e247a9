"""A procedural world of named classes: stuff regions and things, with textures and parts.

``render_scene(rng, size)`` returns the image, its semantic label map, the unlabeled region
masks (stuff regions, whole things and their parts, as SAM would find them) and the names
present. Everything is numpy/OpenCV and seeded, hence deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

Rng = np.random.Generator
Painter = Callable[[Rng, int, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- textures


def _blur_noise(rng: Rng, size: int, blur: float, amp: float) -> np.ndarray:
    noise = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    if blur > 0:
        noise = cv2.GaussianBlur(noise, (0, 0), blur)
        noise /= noise.std() + 1e-6
    return noise * amp


def _stripes(rng: Rng, size: int, period: float, angle: float, amp: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    proj = xx * np.cos(angle) + yy * np.sin(angle)
    return amp * np.sin(2 * np.pi * proj / period + phase)


def _colour(rng: Rng, base: tuple[int, int, int], jitter: float) -> np.ndarray:
    return np.clip(np.array(base, np.float32) + rng.uniform(-jitter, jitter, 3), 0, 255)


def _field(colour: np.ndarray, shade: np.ndarray) -> np.ndarray:
    return np.clip(colour[None, None, :] + shade[..., None], 0, 255)


def sky(rng: Rng, size: int, c: np.ndarray) -> np.ndarray:
    grad = np.linspace(-25, 25, size, dtype=np.float32)[:, None].repeat(size, 1)
    img = _field(c, grad + _blur_noise(rng, size, 3, 3))
    clouds = _blur_noise(rng, size, size / 10, 1.0) > 1.1
    img[clouds] = 0.5 * img[clouds] + 0.5 * 245
    return img


def grass(rng: Rng, size: int, c: np.ndarray) -> np.ndarray:
    blades = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (1, 7), 0)
    return _field(c, 40 * blades / (blades.std() + 1e-6) * 0.6 + _blur_noise(rng, size, 6, 8))


def water(rng: Rng, size: int, c: np.ndarray) -> np.ndarray:
    waves = _stripes(rng, size, rng.uniform(5, 8), np.pi / 2, 22)
    return _field(c, waves + _blur_noise(rng, size, 2, 5))


def sand(rng: Rng, size: int, c: np.ndarray) -> np.ndarray:
    return _field(c, _blur_noise(rng, size, 0, 14) + _blur_noise(rng, size, 8, 6))


def brick(rng: Rng, size: int, c: np.ndarray) -> np.ndarray:
    bh, bw = int(rng.integers(6, 9)), int(rng.integers(12, 18))
    yy, xx = np.mgrid[0:size, 0:size]
    row = yy // bh
    mortar = (yy % bh == 0) | (((xx + (row % 2) * bw // 2) % bw) == 0)
    img = _field(c, _blur_noise(rng, size, 1, 10))
    img[mortar] = 200
    return img


def snow(rng: Rng, size: int, c: np.ndarray) -> np.ndarray:
    return _field(c, _blur_noise(rng, size, 5, 7) + _blur_noise(rng, size, 0, 3))


def road(rng: Rng, size: int, c: np.ndarray) -> np.ndarray:
    img = _field(c, _blur_noise(rng, size, 0, 9))
    y = int(rng.integers(size // 3, 2 * size // 3))
    dashes = (np.arange(size) // 8) % 2 == 0
    img[y : y + 2, dashes] = (230, 220, 90)
    return img


def wood(rng: Rng, size: int, c: np.ndarray) -> np.ndarray:
    grain = _stripes(rng, size, rng.uniform(3, 5), rng.uniform(-0.15, 0.15), 18)
    return _field(c, grain + _blur_noise(rng, size, 4, 8))


def plain(blur: float, amp: float) -> Painter:
    def paint(rng: Rng, size: int, c: np.ndarray) -> np.ndarray:
        return _field(c, _blur_noise(rng, size, blur, amp))

    return paint


def spotted(rng: Rng, size: int, c: np.ndarray) -> np.ndarray:
    img = _field(c, _blur_noise(rng, size, 2, 6))
    img[_blur_noise(rng, size, 1.5, 1.0) > 1.3] = 250
    return img


def striped(rng: Rng, size: int, c: np.ndarray) -> np.ndarray:
    img = _field(c, _blur_noise(rng, size, 2, 4))
    band = _stripes(rng, size, rng.uniform(6, 9), rng.uniform(0, np.pi), 1.0) > 0.3
    img[band] = 255 - c
    return img


# --------------------------------------------------------------------------- classes


@dataclass(frozen=True)
class ClassStyle:
    name: str
    kind: str  # "stuff" | "thing"
    colour: tuple[int, int, int]
    jitter: float
    paint: Painter


# Colours are spread so that no two classes share a hue family (each class is still a
# distribution: jitter, texture, look-alike patches). Classes that overlapped in colour (box,
# sand and wooden floor; car and water; rock and road) made the online clustering group masks
# by colour family, the same way in every batch, and those systematic errors cap what
# PixelCLIP can learn (RESULTS.md, diagnosis section 6).
CLASSES: tuple[ClassStyle, ...] = (
    ClassStyle("sky", "stuff", (110, 165, 230), 20, sky),
    ClassStyle("grass", "stuff", (70, 150, 50), 20, grass),
    ClassStyle("water", "stuff", (20, 120, 150), 12, water),
    ClassStyle("sand", "stuff", (225, 205, 140), 10, sand),
    ClassStyle("brick wall", "stuff", (160, 70, 50), 20, brick),
    ClassStyle("snow", "stuff", (235, 240, 245), 8, snow),
    ClassStyle("road", "stuff", (85, 85, 90), 15, road),
    ClassStyle("wooden floor", "stuff", (130, 80, 30), 12, wood),
    ClassStyle("ball", "thing", (230, 30, 30), 12, spotted),
    ClassStyle("box", "thing", (40, 200, 190), 12, plain(1, 8)),
    ClassStyle("tree", "thing", (10, 70, 60), 10, plain(2, 18)),
    ClassStyle("house", "thing", (250, 160, 160), 12, plain(3, 5)),
    ClassStyle("car", "thing", (30, 30, 120), 12, plain(6, 4)),
    ClassStyle("sun", "thing", (255, 215, 40), 10, plain(4, 4)),
    ClassStyle("flower", "thing", (240, 120, 240), 12, plain(1, 6)),
    ClassStyle("fish", "thing", (245, 140, 30), 20, striped),
    ClassStyle("kite", "thing", (150, 40, 120), 12, striped),
    ClassStyle("rock", "thing", (160, 140, 210), 10, plain(1, 16)),
)
NAMES = tuple(c.name for c in CLASSES)
IDS = {c.name: i for i, c in enumerate(CLASSES)}
GROUNDS = ("grass", "water", "sand", "snow", "road", "wooden floor")
BACKGROUNDS = ("sky", "sky", "sky", "brick wall")
SKY_THINGS = ("sun", "kite")
GROUND_THINGS = ("ball", "box", "tree", "house", "car", "flower", "fish", "rock")
# Stuff regions hold patches that look like another class (clouds, bare earth, reflections,
# ivy...): locally ambiguous, named by the region they lie in. Real scenes are like this, and
# it is what makes CLIP's per-patch predictions noisy while a whole region is easy to name.
DISTRACTORS = {"sky": "snow", "grass": "sand", "water": "sky", "sand": "rock", "snow": "road",
               "road": "water", "brick wall": "tree", "wooden floor": "brick wall"}
PART_COLOURS = {"roof": (150, 45, 40), "trunk": (100, 65, 35), "wheel": (25, 25, 25),
                "door": (110, 75, 45), "centre": (250, 220, 60), "window": (170, 210, 235)}


# --------------------------------------------------------------------------- shapes


def _shape(name: str, rng: Rng, size: int, cx: float, cy: float, s: float) -> list[tuple]:
    """Masks of a thing and its parts: ``[(part_name | None, mask), ...]``, whole first."""
    def canvas() -> np.ndarray:
        return np.zeros((size, size), np.uint8)

    def poly(points) -> np.ndarray:
        m = canvas()
        cv2.fillPoly(m, [np.round(np.array(points)).astype(np.int32)], 1)
        return m

    def circle(x, y, r) -> np.ndarray:
        m = canvas()
        cv2.circle(m, (round(x), round(y)), max(1, round(r)), 1, -1)
        return m

    def ellipse(x, y, a, b, angle=0.0) -> np.ndarray:
        m = canvas()
        axes = (max(1, round(a)), max(1, round(b)))
        cv2.ellipse(m, (round(x), round(y)), axes, angle, 0, 360, 1, -1)
        return m

    def rect(x0, y0, x1, y1) -> np.ndarray:
        return poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])

    if name in ("ball", "sun"):
        return [(None, circle(cx, cy, s / 2))]
    if name == "box":
        return [(None, rect(cx - s / 2, cy - s / 2.4, cx + s / 2, cy + s / 2.4))]
    if name == "rock":
        k = int(rng.integers(6, 10))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = s / 2 * rng.uniform(0.6, 1.0, k)
        return [(None, poly(np.stack([cx + rad * np.cos(ang), cy + 0.7 * rad * np.sin(ang)], 1)))]
    if name == "kite":
        diamond = [(cx, cy - s / 2), (cx + s / 3, cy), (cx, cy + s / 2), (cx - s / 3, cy)]
        return [(None, poly(diamond))]
    if name == "fish":
        body = ellipse(cx, cy, s / 2, s / 4)
        tail = poly([(cx + s / 2.4, cy), (cx + s / 1.4, cy - s / 4), (cx + s / 1.4, cy + s / 4)])
        return [(None, body | tail)]
    if name == "flower":
        petals = canvas()
        for a in np.linspace(0, 2 * np.pi, 6, endpoint=False):
            petals |= circle(cx + s / 4 * np.cos(a), cy + s / 4 * np.sin(a), s / 5)
        centre = circle(cx, cy, s / 7)
        return [(None, petals | centre), ("centre", centre)]
    if name == "tree":
        crown = ellipse(cx, cy - s / 5, s / 2.6, s / 2.2)
        trunk = rect(cx - s / 12, cy + s / 6, cx + s / 12, cy + s / 1.6) & (1 - crown)
        return [(None, crown | trunk), ("trunk", trunk)]
    if name == "house":
        wall = rect(cx - s / 2, cy - s / 5, cx + s / 2, cy + s / 2)
        roof = poly([(cx - s / 1.7, cy - s / 5), (cx + s / 1.7, cy - s / 5), (cx, cy - s / 1.6)])
        door = rect(cx - s / 10, cy + s / 6, cx + s / 10, cy + s / 2)
        return [(None, wall | roof), ("roof", roof), ("door", door)]
    if name == "car":
        body = rect(cx - s / 2, cy - s / 6, cx + s / 2, cy + s / 6)
        cabin = rect(cx - s / 4, cy - s / 2.6, cx + s / 4, cy - s / 6)
        window = rect(cx - s / 5, cy - s / 3, cx + s / 5, cy - s / 5)
        wheels = circle(cx - s / 3, cy + s / 6, s / 8) | circle(cx + s / 3, cy + s / 6, s / 8)
        return [(None, body | cabin | wheels), ("wheel", wheels), ("window", window)]
    raise KeyError(name)


# --------------------------------------------------------------------------- scenes


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    label: np.ndarray  # (H, W) uint8 class ids
    masks: np.ndarray  # (N, H, W) bool, unlabeled regions (stuff, things, parts)
    names: list[str]  # class names present, in drawing order


def _wavy_boundary(rng: Rng, size: int, level: float, amp: float) -> np.ndarray:
    x = np.arange(size, dtype=np.float32)
    wave = amp * np.sin(2 * np.pi * x / rng.uniform(size / 2, 2 * size) + rng.uniform(0, 6.3))
    return level * size + wave + rng.uniform(-0.08, 0.08) * (x - size / 2)


def _blobs(rng: Rng, size: int, coverage: float) -> np.ndarray:
    """Smooth random blobs covering about ``coverage`` of the image."""
    field = _blur_noise(rng, size, size / 14, 1.0)
    return field > np.quantile(field, 1.0 - coverage)


def _stuff_layout(rng: Rng, size: int) -> list[tuple[str, np.ndarray]]:
    yy, xx = np.mgrid[0:size, 0:size]
    horizon = _wavy_boundary(rng, size, rng.uniform(0.25, 0.55), rng.uniform(0, size / 16))
    top = yy < horizon[None, :]
    grounds = [str(g) for g in rng.choice(GROUNDS, size=2, replace=False)]
    layout = [(str(rng.choice(BACKGROUNDS)), top)]
    if rng.random() < 0.5:
        layout.append((grounds[0], ~top))
    else:  # two grounds split by a slanted, wavy line
        split = _wavy_boundary(rng, size, rng.uniform(0.35, 0.65), rng.uniform(0, size / 12))
        left = xx < split[yy]
        layout += [(grounds[0], ~top & left), (grounds[1], ~top & ~left)]
    return [(n, m) for n, m in layout if m.any()]


def _paint(style: ClassStyle, rng: Rng, size: int, colour: np.ndarray | None = None) -> np.ndarray:
    if colour is None:
        colour = _colour(rng, style.colour, style.jitter)
    return style.paint(rng, size, colour)


def render_scene(rng: Rng, size: int) -> Scene:
    """Draw one scene: stuff (with look-alike patches), 1–3 things with parts, in depth order."""
    image = np.zeros((size, size, 3), np.float32)
    label = np.zeros((size, size), np.uint8)
    regions: list[tuple[int, np.ndarray]] = []  # (instance, mask) in drawing order
    layout = _stuff_layout(rng, size)
    for name, mask in layout:
        image[mask] = _paint(CLASSES[IDS[name]], rng, size)[mask]
        patches = mask & _blobs(rng, size, rng.uniform(0.1, 0.3))
        image[patches] = _paint(CLASSES[IDS[DISTRACTORS[name]]], rng, size)[patches]
        label[mask] = IDS[name]
        regions.append((len(regions), mask))
    horizon_row = int(np.argmax(~layout[0][1], axis=0).mean()) if len(layout) > 1 else size // 2
    things = []
    for _ in range(int(rng.integers(1, 4))):
        in_sky = rng.random() < 0.25 and layout[0][0] == "sky"
        name = str(rng.choice(SKY_THINGS if in_sky else GROUND_THINGS))
        s = rng.uniform(0.3, 0.6) * size
        if in_sky:
            cy = rng.uniform(s / 2, max(s / 2 + 1, horizon_row - s / 3))
        else:
            cy = rng.uniform(min(horizon_row + s / 4, size - s / 2), size - s / 3)
        cx = rng.uniform(s / 3, size - s / 3)
        things.append((name, _shape(name, rng, size, cx, cy, s)))
    things.sort(key=lambda t: t[1][0][1].nonzero()[0].max(initial=0))  # far (higher) first
    for name, parts in things:
        instance = len(regions)
        whole = parts[0][1].astype(bool)
        image[whole] = _paint(CLASSES[IDS[name]], rng, size)[whole]
        label[whole] = IDS[name]
        regions.append((instance, whole))
        for part, pmask in parts[1:]:
            pm = pmask.astype(bool) & whole
            image[pm] = plain(1, 6)(rng, size, _colour(rng, PART_COLOURS[part], 12))[pm]
            regions.append((instance, pm))
    drawn = [n for n, _ in layout] + [n for n, _ in things]
    present = [n for n in drawn if (label == IDS[n]).any()]
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    return Scene(image, label, _visible_masks(regions, label.shape), list(dict.fromkeys(present)))


def _visible_masks(regions: list[tuple[int, np.ndarray]], shape: tuple[int, int]) -> np.ndarray:
    """Each region minus what later instances cover (a thing is not hidden by its own parts)."""
    visible = []
    for i, (instance, mask) in enumerate(regions):
        covered = np.zeros(shape, bool)
        for other, later in regions[i + 1 :]:
            if other != instance:
                covered |= later
        keep = mask & ~covered
        if keep.sum() >= 4:
            visible.append(keep)
    return np.stack(visible) if visible else np.zeros((0, *shape), bool)
