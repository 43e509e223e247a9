"""The inference protocols as their official codes run them, restated here from those codes:
PixelCLIP's (detectron2's test mapper, then the whole image squashed bilinearly to the CLIP
resolution) and the training-free peers' (SCLIP's, NACLIP's, ClearCLIP's: mmcv's keep-ratio
Resize, sliding windows averaged, positions interpolated by scale factor, the peers' class
names, the best name of a class after a softmax at logit scale 40)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from config import PROTOCOLS, EvalOption, EvaluateParams
from evaluate.benchmarks import LAYOUTS
from evaluate.class_names import COCO_STUFF_171, IMAGENET_TEMPLATES, VOC20
from evaluate.inference import PEER_PROTOCOLS, classifier, options_for, predict, text_classifier
from evaluate.refine import pamr
from models import dense
from models.clip import load_clip
from models.dense import dense_features

CPU = torch.device("cpu")
SCLIP = EvalOption("peers", dense_mode="sclip", protocol="sclip")


@pytest.fixture(scope="module")
def bundle():
    torch.manual_seed(0)
    return load_clip("TinyCLIP-ViT-8", "")


def smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Colour blobs with noise, so that predictions have regions."""
    base = rng.integers(0, 256, (height // 12 + 2, width // 12 + 2, 3), dtype=np.uint8)
    img = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int64)
    return np.clip(img + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)


def normalised(bundle, rgb: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float()
    mean = torch.tensor(bundle.mean).view(3, 1, 1) * 255
    std = torch.tensor(bundle.std).view(3, 1, 1) * 255
    return ((x - mean) / std)[None]


def test_sclip_protocol_takes_sclips_settings_per_benchmark():
    cfg = EvaluateParams()
    sides = {b: options_for(cfg, SCLIP, b).slide_short_side for b in [*LAYOUTS, "synthetic"]}
    assert sides == {"coco_stuff": 448, "ade20k_150": 336, "pascal_context_59": 336,
                     "cityscapes": 560, "voc20": 336, "synthetic": 336}
    voc = options_for(cfg, SCLIP, "voc20")
    assert (voc.resolution, voc.window_stride, voc.slide_max, voc.resize, voc.feature_size,
            voc.sliding_window) == (224, 112, 2048, "mmcv", 0, True)
    assert voc.templates == IMAGENET_TEMPLATES and len(set(voc.templates)) == 80
    names = dict(zip(VOC20, voc.class_names, strict=True))
    assert names["boat"] == ("ship",) and names["cat"] == ("cat",)
    assert len(names["person"]) == 7 and names["tvmonitor"][:2] == ("television monitor",
                                                                     "tv monitor")
    coco = dict(zip(COCO_STUFF_171, options_for(cfg, SCLIP, "coco_stuff").class_names,
                    strict=True))
    assert coco["traffic light"] == ("trafficlight",) and coco["sky-other"] == ("sky-other",)
    assert options_for(cfg, SCLIP, "synthetic").class_names == ()
    assert options_for(cfg, None, "voc20").class_names == ()  # the paper's: its own names


def geometry(protocol: str, benchmark: str) -> tuple:
    o = options_for(EvaluateParams(), EvalOption("x", protocol=protocol), benchmark)
    return o.slide_short_side, o.resolution, o.window_stride, o.pad_crops


def test_naclip_and_clearclip_protocols_take_their_configs():
    """NACLIP's configs: SCLIP's but COCO-Stuff at 336 and VOC-20 whole (a window as large
    as the long side's cap); ClearCLIP's: short side 448, 448² windows at stride 224 (224²
    on Cityscapes), crops padded, VOC-20 without synonyms."""
    assert ("pixelclip", *PEER_PROTOCOLS) == PROTOCOLS  # the params' choices, all built
    benches = [*LAYOUTS, "synthetic"]
    assert {b: geometry("naclip", b) for b in benches} == {
        **{b: (336, 224, 112, False) for b in benches},
        "cityscapes": (560, 224, 112, False), "voc20": (336, 2048, 112, False)}
    assert {b: geometry("clearclip", b) for b in benches} == {
        **{b: (448, 448, 224, True) for b in benches}, "cityscapes": (448, 224, 224, True)}
    cfg = EvaluateParams()
    for protocol in ("sclip", "naclip", "clearclip"):
        voc = options_for(cfg, EvalOption("x", protocol=protocol), "voc20")
        assert (voc.resize, voc.slide_max, voc.positions, voc.templates) == (
            "mmcv", 2048, "scale", IMAGENET_TEMPLATES)
        names = dict(zip(VOC20, voc.class_names, strict=True))
        assert names["boat"] == ("ship",) and names["diningtable"] == ("table",)
        assert len(names["person"]) == (1 if protocol == "clearclip" else 7)
        assert names["tvmonitor"][0] == ("tvmonitor" if protocol == "clearclip"
                                         else "television monitor")
    assert options_for(cfg, None, "voc20").positions == "size"
    with pytest.raises(ValueError, match="resize 'mmvc' is not one of antialias, bilinear"):
        dataclasses.replace(voc, resize="mmvc")  # no silent fallback to another filter


def peers_positions(pos: torch.Tensor, old_grid, new_grid, positions="") -> torch.Tensor:
    """The peers' ``interpolate_pos_encoding`` (DINO's): only when the token count changes,
    bicubic by the scale factor (new side + 0.1) / old side."""
    n = old_grid[0]
    if new_grid[0] * new_grid[1] == n * n:
        return pos
    grid = pos[1:].reshape(1, n, n, -1).permute(0, 3, 1, 2)
    h0, w0 = new_grid[0] + 0.1, new_grid[1] + 0.1
    grid = F.interpolate(grid, scale_factor=(h0 / n, w0 / n), mode="bicubic")
    assert grid.shape[-2:] == tuple(new_grid)
    return torch.cat([pos[:1], grid.permute(0, 2, 3, 1).reshape(-1, pos.shape[-1])])


TEXTS: dict[tuple[str, ...], torch.Tensor] = {}


def official_peer(bundle, rgb: np.ndarray, class_names, mode: str, short: int, crop: int,
                  stride: int, pad: bool = False, pamr_steps: int = 0) -> np.ndarray:
    """The peers' segmentors (SCLIP's, NACLIP's, ClearCLIP's): mmcv's keep-ratio rescale to
    (2048, short) with OpenCV's bilinear on the uint8 image; ``crop``² crops every ``stride``
    pixels (the last one flush with the edge, a shorter side cropped whole; ``crop`` 0 = the
    whole image), a crop off the patch grid losing its last partial patch (SCLIP, NACLIP) or
    ``pad``-ded around its centre and cut back (ClearCLIP); each crop's token features
    normalised on its grid, logits upsampled to the crop and averaged, upsampled to the
    image, PAMR guided by the resized input upsampled to the image, softmax at logit scale
    40, a class's best name, argmax."""
    h, w = rgb.shape[:2]
    factor = min(2048 / max(h, w), short / min(h, w))
    resized = cv2.resize(rgb, (int(w * factor + 0.5), int(h * factor + 0.5)),
                         interpolation=cv2.INTER_LINEAR)
    x = normalised(bundle, resized)
    names = tuple(n for group in class_names for n in group)
    owner = torch.tensor([c for c, group in enumerate(class_names) for _ in group])
    if names not in TEXTS:  # COCO-Stuff's 171 names x 80 templates take seconds
        TEXTS[names] = text_classifier(bundle, names, IMAGENET_TEMPLATES)
    text = TEXTS[names]
    _, _, hi, wi = x.shape
    crop, stride = (crop, stride) if crop else (max(hi, wi), 1)
    preds = torch.zeros(1, len(names), hi, wi)
    count = torch.zeros(1, 1, hi, wi)
    with torch.no_grad():
        for row in range(max(hi - crop + stride - 1, 0) // stride + 1):
            for col in range(max(wi - crop + stride - 1, 0) // stride + 1):
                y2, x2 = min(row * stride + crop, hi), min(col * stride + crop, wi)
                y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
                part = x[:, :, y1:y2, x1:x2]
                ph, pw = part.shape[-2:]
                top, left = (-ph % 8) // 2, (-pw % 8) // 2
                if pad:
                    part = F.pad(part, (left, -pw % 8 - left, top, -ph % 8 - top))
                else:  # the patch embedding drops a last partial patch
                    part = part[..., :ph // 8 * 8, :pw // 8 * 8]
                feats = F.normalize(dense_features(bundle.model.visual, part, mode), dim=1)
                logits = torch.einsum("bdhw,qd->bqhw", feats, text)
                logits = F.interpolate(logits, size=part.shape[-2:] if pad else (ph, pw),
                                       mode="bilinear")
                if pad:
                    logits = logits[:, :, top:top + ph, left:left + pw]
                preds += F.pad(logits, (x1, wi - x2, y1, hi - y2))
                count[:, :, y1:y2, x1:x2] += 1
    logits = F.interpolate(preds / count, size=(h, w), mode="bilinear")[0]
    if pamr_steps:
        guide = F.interpolate(x, size=(h, w), mode="bilinear")[0]
        logits = pamr(guide, logits, pamr_steps, (8, 16))
    probs = (logits * 40).softmax(0)
    best = torch.stack([probs[owner == c].amax(0) for c in range(len(class_names))])
    return best.argmax(0).numpy()


# protocol, benchmark, image shape, PAMR steps, official geometry (short side, crop, stride,
# pad), and a setting of ours that, changed, changes the labels (what the case checks)
PEER_CASES = [
    ("sclip", "voc20", (75, 100), 0, (336, 224, 112, False), {"resize": "antialias"}),
    ("sclip", "voc20", (60, 90), 10, (336, 224, 112, False), {"resize": "antialias"}),
    ("sclip", "coco_stuff", (40, 700), 0, (448, 224, 112, False), {"positions": "size"}),
    ("naclip", "voc20", (75, 100), 0, (336, 0, 0, False), {"resolution": 224}),
    ("naclip", "coco_stuff", (60, 90), 0, (336, 224, 112, False), {"slide_short_side": 448}),
    ("clearclip", "voc20", (75, 100), 0, (448, 448, 224, False), {"positions": "size"}),
    ("clearclip", "cityscapes", (40, 80), 0, (448, 224, 224, False), {"window_stride": 112}),
    ("clearclip", "coco_stuff", (40, 700), 0, (448, 448, 224, True), {"pad_crops": False}),
]


@pytest.mark.parametrize("protocol,benchmark,shape,pamr_steps,geometry,other", PEER_CASES)
def test_peer_protocol_is_the_peers_pipeline(bundle, monkeypatch, protocol, benchmark, shape,
                                             pamr_steps, geometry, other):
    """Equal labels: VOC-20 images (SCLIP's and NACLIP's names with synonyms), with PAMR,
    NACLIP's VOC-20 as one whole image, ClearCLIP's 448² windows and Cityscapes' 224² ones,
    and panoramas whose long side hits mmcv's 2048 cap, leaving a short side below the
    window (positions interpolated by the peers' scale factor; ClearCLIP pads the crop)."""
    rgb = smooth_image(np.random.default_rng(1), *shape)
    option = EvalOption("peer", dense_mode="sclip", protocol=protocol, pamr=bool(pamr_steps))
    options = options_for(EvaluateParams(pamr_steps=pamr_steps or 10), option, benchmark)
    with monkeypatch.context() as patch:
        patch.setattr(dense, "interpolate_pos_embed", peers_positions)
        want = official_peer(bundle, rgb, options.class_names, "sclip", *geometry, pamr_steps)
    text = classifier(bundle, options, LAYOUTS[benchmark].classes)
    assert torch.equal(text, TEXTS[tuple(n for group in options.class_names for n in group)])
    got = predict(bundle, text, [rgb], options, CPU)[0]
    assert got.shape == shape and len(np.unique(want)) > 3
    assert np.array_equal(got, want)
    changed = dataclasses.replace(options, **other)
    assert not np.array_equal(predict(bundle, text, [rgb], changed, CPU)[0], want)


def test_positions_by_scale_are_the_peers():
    pos = torch.randn(1 + 12 * 12, 16)
    for grid in [(28, 28), (14, 28), (7, 88), (16, 9), (24, 6)]:
        want = peers_positions(pos, (12, 12), grid)
        assert torch.equal(dense.interpolate_pos_embed(pos, (12, 12), grid, "scale"), want)
        by_size = dense.interpolate_pos_embed(pos, (12, 12), grid)
        assert by_size.shape == want.shape and not torch.equal(by_size, want)
    assert torch.equal(dense.interpolate_pos_embed(pos, (12, 12), (24, 6), "scale"), pos)
    with pytest.raises(ValueError, match="positions must be one of"):
        dense.interpolate_pos_embed(pos, (12, 12), (8, 8), "scaled")


def official_pixelclip(bundle, rgb: np.ndarray, text: torch.Tensor, short: int, longest: int,
                       resolution: int, feature_size: int) -> np.ndarray:
    """detectron2's test mapper (``ResizeShortestEdge.get_output_shape``, then PIL's bilinear
    resize), normalised, ``F.interpolate`` to ``resolution``² (no antialiasing), dense
    features upsampled to ``feature_size``² and normalised, cosine logits, ``sem_seg_postprocess``
    to the image's size, argmax."""
    h, w = rgb.shape[:2]
    scale = short / min(h, w)
    newh, neww = (short, scale * w) if h < w else (scale * h, short)
    if max(newh, neww) > longest:
        shrink = longest / max(newh, neww)
        newh, neww = newh * shrink, neww * shrink
    mapped = np.array(Image.fromarray(rgb).resize((int(neww + 0.5), int(newh + 0.5)),
                                                    Image.BILINEAR))
    x = F.interpolate(normalised(bundle, mapped), size=(resolution, resolution),
                      mode="bilinear", align_corners=False)
    with torch.no_grad():
        feats = dense_features(bundle.model.visual, x, "maskclip")
    feats = F.normalize(F.interpolate(feats, size=(feature_size,) * 2, mode="bilinear"), dim=1)
    logits = torch.einsum("bdhw,cd->bchw", feats, text)
    return F.interpolate(logits, size=(h, w), mode="bilinear")[0].argmax(0).numpy()


def test_paper_protocol_is_the_official_test_path(bundle):
    """With the real setup's resize keys (the test mapper's short side and long-side cap, no
    antialiasing; test_config checks params/real.yaml sets them) the whole-image path is the
    official one, for an image scaled up by the short side and one capped by the long side."""
    cfg = EvaluateParams(resize_short=100, resize_max=150, antialias=False, resolution=64,
                         feature_size=32, dense_mode="maskclip")  # varied labels at random init
    options = options_for(cfg)
    text = F.normalize(torch.randn(6, 128, generator=torch.Generator().manual_seed(0)), dim=-1)
    rng = np.random.default_rng(2)
    for shape in [(50, 70), (300, 90)]:
        rgb = smooth_image(rng, *shape)
        want = official_pixelclip(bundle, rgb, text, 100, 150, 64, 32)
        got = predict(bundle, text, [rgb], options, CPU)[0]
        assert len(np.unique(want)) > 2 and np.array_equal(got, want)
    default = options_for(dataclasses.replace(cfg, resize_short=0, antialias=True))
    assert not np.array_equal(predict(bundle, text, [rgb], default, CPU)[0], want)
