"""The two inference protocols as their official codes run them, restated here from those
codes: PixelCLIP's (detectron2's test mapper, then the whole image squashed bilinearly to the
CLIP resolution) and SCLIP's (mmcv's keep-ratio Resize, 224² windows at stride 112 averaged,
the peers' class names, the best name of a class after a softmax at logit scale 40)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from config import EvalOption, EvaluateParams
from evaluate.benchmarks import LAYOUTS
from evaluate.class_names import COCO_STUFF_171, IMAGENET_TEMPLATES, VOC20
from evaluate.inference import classifier, options_for, predict, text_classifier
from evaluate.refine import pamr
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
    with pytest.raises(ValueError, match="resize 'mmvc' is not one of antialias, bilinear"):
        dataclasses.replace(voc, resize="mmvc")  # no silent fallback to another filter


def official_sclip(bundle, rgb: np.ndarray, class_names, short: int,
                   pamr_steps: int = 0) -> np.ndarray:
    """SCLIP's segmentor: mmcv's keep-ratio rescale to (2048, short) with OpenCV's bilinear
    on the uint8 image, 224² crops every 112 pixels (the last one flush with the edge, a
    shorter side cropped whole), each crop's token features normalised on its grid, logits
    upsampled to the crop and averaged, upsampled to the image, PAMR guided by the resized
    input upsampled to the image, softmax at logit scale 40, a class's best name, argmax."""
    h, w = rgb.shape[:2]
    factor = min(2048 / max(h, w), short / min(h, w))
    resized = cv2.resize(rgb, (int(w * factor + 0.5), int(h * factor + 0.5)),
                         interpolation=cv2.INTER_LINEAR)
    x = normalised(bundle, resized)
    names = [n for group in class_names for n in group]
    owner = torch.tensor([c for c, group in enumerate(class_names) for _ in group])
    text = text_classifier(bundle, names, IMAGENET_TEMPLATES)
    crop, stride = 224, 112
    _, _, hi, wi = x.shape
    preds = torch.zeros(1, len(names), hi, wi)
    count = torch.zeros(1, 1, hi, wi)
    with torch.no_grad():
        for row in range(max(hi - crop + stride - 1, 0) // stride + 1):
            for col in range(max(wi - crop + stride - 1, 0) // stride + 1):
                y2, x2 = min(row * stride + crop, hi), min(col * stride + crop, wi)
                y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
                part = x[:, :, y1:y2, x1:x2]  # SCLIP's patch embedding drops a last partial
                part = part[..., :part.shape[-2] // 8 * 8, :part.shape[-1] // 8 * 8]  # patch
                feats = F.normalize(dense_features(bundle.model.visual, part, "sclip"), dim=1)
                logits = torch.einsum("bdhw,qd->bqhw", feats, text)
                preds += F.pad(F.interpolate(logits, size=(y2 - y1, x2 - x1), mode="bilinear"),
                               (x1, wi - x2, y1, hi - y2))
                count[:, :, y1:y2, x1:x2] += 1
    logits = F.interpolate(preds / count, size=(h, w), mode="bilinear")[0]
    if pamr_steps:
        guide = F.interpolate(x, size=(h, w), mode="bilinear")[0]
        logits = pamr(guide, logits, pamr_steps, (8, 16))
    probs = (logits * 40).softmax(0)
    best = torch.stack([probs[owner == c].amax(0) for c in range(len(class_names))])
    return best.argmax(0).numpy()


@pytest.mark.parametrize("benchmark,shape,pamr_steps", [
    ("voc20", (75, 100), 0), ("voc20", (60, 90), 10), ("coco_stuff", (40, 700), 0)])
def test_sclip_protocol_is_sclips_pipeline(bundle, benchmark, shape, pamr_steps):
    """Equal labels on VOC-20 images (names with synonyms), with and without PAMR, and on a
    panorama whose long side hits mmcv's 2048 cap, leaving a short side below the window."""
    rgb = smooth_image(np.random.default_rng(1), *shape)
    option = dataclasses.replace(SCLIP, pamr=bool(pamr_steps))
    options = options_for(EvaluateParams(pamr_steps=pamr_steps or 10), option, benchmark)
    want = official_sclip(bundle, rgb, options.class_names, options.slide_short_side,
                          pamr_steps)
    classes = LAYOUTS[benchmark].classes
    got = predict(bundle, classifier(bundle, options, classes), [rgb], options, CPU)[0]
    assert got.shape == shape and len(np.unique(want)) > 3
    assert np.array_equal(got, want)
    antialiased = dataclasses.replace(options, resize="antialias")
    assert not np.array_equal(predict(bundle, classifier(bundle, options, classes), [rgb],
                                      antialiased, CPU)[0], want)


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
