"""Open-vocabulary inference (docs/method.md): class names → text classifier; image →
dense CLIP features (``models.clip.dense_features``, the path training uses) → cosine
similarity with the class embeddings → logits upsampled to label size → argmax.

Two modes: the whole image squashed to ``resolution``² (the paper's protocol), or sliding
``resolution``² windows over the image resized to a short side of ``slide_short_side``, window
logits averaged where they overlap. The logits at the image's size may then be refined
(``evaluate.refine``: PAMR, masks), and a class scored by several names takes its best one,
before the argmax. :func:`options_for` turns the evaluate params, an option of the results
table and a benchmark into :class:`InferenceOptions`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from evaluate.benchmarks import LAYOUTS
from evaluate.class_names import IMAGENET_TEMPLATES, TEMPLATES, peer_class_names, prompts_for
from evaluate.refine import paint_masks, pamr
from models.clip import CLIPBundle, encode_texts
from models.dense import POSITIONS, dense_features, stride
from train.augment import resized_shape

# How an image is resized to the network's input: torch's antialiased bilinear filter, plain
# bilinear sampling of the float image (``F.interpolate``, as the official PixelCLIP model
# does), or OpenCV's bilinear on the uint8 image (mmcv's ``Resize``, the peers' protocol).
RESIZES = ("antialias", "bilinear", "mmcv")


@dataclass(frozen=True)
class InferenceOptions:
    """How an image becomes logits; built from ``EvaluateParams`` by :func:`options_from`."""

    resolution: int = 64
    feature_size: int = 64
    sliding_window: bool = False
    window_stride: int = 0  # 0 = resolution * 2 / 3
    slide_short_side: int = 0  # 0 = resolution
    dense_mode: str = "pixelclip"
    templates: tuple[str, ...] = TEMPLATES
    pamr_steps: int = 0  # 0 = no PAMR
    pamr_dilations: tuple[int, ...] = (8, 16)
    resize: str = "antialias"  # one of RESIZES
    # detectron2's test mapper first (PIL bilinear): short side to test_short, long side at
    # most test_max (0 = no limit); 0 = the image as read
    test_short: int = 0
    test_max: int = 0
    slide_max: int = 0  # sliding: the resized image's long side at most this; 0 = no limit
    # per class, the names it is scored by (the best one wins); () = the benchmark's own
    class_names: tuple[tuple[str, ...], ...] = ()
    positions: str = "size"  # how positional embeddings reach the grid (models.dense.POSITIONS)
    pad_crops: bool = False  # sliding: a crop off the patch grid zero-padded to it, centred

    def __post_init__(self) -> None:
        if self.resize not in RESIZES:
            raise ValueError(f"resize {self.resize!r} is not one of {', '.join(RESIZES)}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions {self.positions!r} is not one of "
                             f"{', '.join(POSITIONS)}")


@dataclass(frozen=True)
class PeerProtocol:
    """A training-free peer's test configs, per benchmark ("" = any other): the short side
    the image is resized to (long side at most :data:`PEER_LONG_SIDE`), the sliding window
    (0 = the whole image) and its stride."""

    short_side: dict[str, int]
    window: dict[str, int]
    stride: int
    pad_crops: bool = False  # a crop off the patch grid padded to it (else its rest dropped)
    synonyms: bool = True  # VOC-20's person and monitor scored by several names


def _per(table: dict[str, int], benchmark: str) -> int:
    return table.get(benchmark, table[""])


# Their configs (SCLIP's, NACLIP's, ClearCLIP's repositories); all resize as mmcv does, use the
# 80 ImageNet templates and the peers' class names, and interpolate positions by scale factor
PEER_LONG_SIDE = 2048
PEER_PROTOCOLS = {
    "sclip": PeerProtocol({"": 336, "coco_stuff": 448, "cityscapes": 560}, {"": 224}, 112),
    "naclip": PeerProtocol({"": 336, "cityscapes": 560}, {"": 224, "voc20": 0}, 112),
    "clearclip": PeerProtocol({"": 448}, {"": 448, "cityscapes": 224}, 224, pad_crops=True,
                              synonyms=False),
}


def options_for(cfg, option=None, benchmark: str = "") -> InferenceOptions:
    """Inference options of ``cfg`` (an ``EvaluateParams``) with ``option`` (an
    ``EvalOption``, its empty fields taking ``cfg``'s) on ``benchmark``. A peer's protocol
    (:data:`PEER_PROTOCOLS`) fixes its own geometry, resize, templates and class names, as
    that peer's configs do per benchmark."""
    protocol = (option and option.protocol) or cfg.protocol
    mode = (option and option.dense_mode) or cfg.dense_mode
    pamr = option.pamr if option is not None else cfg.pamr
    steps = cfg.pamr_steps if pamr else 0
    if protocol in PEER_PROTOCOLS:
        peer = PEER_PROTOCOLS[protocol]
        names = (peer_class_names(benchmark, LAYOUTS[benchmark].classes, peer.synonyms)
                 if benchmark in LAYOUTS else ())
        return InferenceOptions(
            _per(peer.window, benchmark) or PEER_LONG_SIDE, 0, True, peer.stride,
            _per(peer.short_side, benchmark), mode, IMAGENET_TEMPLATES, steps,
            cfg.pamr_dilations, "mmcv", slide_max=PEER_LONG_SIDE, class_names=names,
            positions="scale", pad_crops=peer.pad_crops)
    return InferenceOptions(cfg.resolution, cfg.feature_size, cfg.sliding_window,
                            cfg.window_stride, cfg.slide_short_side, mode, TEMPLATES, steps,
                            cfg.pamr_dilations, "antialias" if cfg.antialias else "bilinear",
                            cfg.resize_short, cfg.resize_max)


def check_resolution(bundle: CLIPBundle, options: InferenceOptions) -> None:
    """The input side must be a multiple of the tower's stride (dense features need a grid)."""
    step = stride(bundle.model.visual)
    if options.resolution % step:
        raise ValueError(f"evaluate.resolution={options.resolution} is not a multiple of the "
                         f"tower's stride {step}")


def text_classifier(bundle: CLIPBundle, class_names: Sequence[str | Sequence[str]],
                    templates: Sequence[str] = TEMPLATES, chunk: int = 512) -> torch.Tensor:
    """``(Q, D)`` L2-normalised embeddings, each the mean over the prompt templates, of every
    name of every class (a class is one name or a sequence of them, flattened in order)."""
    names = [n for c in class_names for n in ((c,) if isinstance(c, str) else c)]
    texts = [p for name in names for p in prompts_for(name, tuple(templates))]
    parts = [encode_texts(bundle.model, bundle.tokenizer, texts[i:i + chunk])
             for i in range(0, len(texts), chunk)]
    per_template = torch.cat(parts).reshape(len(names), len(templates), -1)
    return F.normalize(per_template.mean(dim=1), dim=-1)


def classifier(bundle: CLIPBundle, options: InferenceOptions,
               classes: Sequence[str]) -> torch.Tensor:
    """The text classifier :func:`predict` expects under ``options`` for a benchmark's
    ``classes``: its names (``options.class_names`` where set) in its templates."""
    return text_classifier(bundle, options.class_names or classes, options.templates)


def best_name(logits: torch.Tensor, class_names: tuple[tuple[str, ...], ...]) -> torch.Tensor:
    """``(Q, ...)`` logits of every name → ``(C, ...)`` of every class, each its best name's
    (the argmax of the peers' softmax at any logit scale, then max over a class's names)."""
    if all(len(names) == 1 for names in class_names):
        return logits
    parts = logits.split([len(names) for names in class_names])
    return torch.stack([p.amax(dim=0) for p in parts])


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resize_shortest_edge(image: np.ndarray, short: int, longest: int) -> np.ndarray:
    """detectron2's test mapper: ``ResizeShortestEdge(short, longest)``, PIL's bilinear filter
    on the uint8 image; ``short`` 0 = the image itself."""
    if not short:
        return image
    height, width = resized_shape(*image.shape[:2], short, longest)
    return np.array(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def to_input(image: np.ndarray, size: tuple[int, int], bundle: CLIPBundle,
             device: torch.device, resize: str = "antialias") -> torch.Tensor:
    """RGB uint8 ``(H, W, 3)`` → normalised float ``(3, *size)`` on ``device``, resized as
    ``resize`` says (:data:`RESIZES`)."""
    if resize == "mmcv" and image.shape[:2] != tuple(size):
        image = cv2.resize(np.ascontiguousarray(image), size[::-1],
                           interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).float() / 255
    if resize != "mmcv":
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False,
                          antialias=resize == "antialias")[0]
    mean = torch.tensor(bundle.mean, device=device).view(3, 1, 1)
    std = torch.tensor(bundle.std, device=device).view(3, 1, 1)
    return (x - mean) / std


def features_to_logits(features: torch.Tensor, text: torch.Tensor,
                       size: tuple[int, int]) -> torch.Tensor:
    """Dense features ``(B, D, h, w)`` → cosine logits ``(B, C, *size)`` (features upsampled
    bilinearly, then normalised)."""
    features = F.interpolate(features.float(), size=size, mode="bilinear", align_corners=False)
    features = F.normalize(features, dim=1)
    return torch.einsum("bdhw,cd->bchw", features, text.to(features))


def whole_features(bundle: CLIPBundle, batch: torch.Tensor, mode: str = "pixelclip",
                   positions: str = "size") -> torch.Tensor:
    """Normalised ``(B, 3, r, r)`` images → dense features ``(B, D, h, w)`` (bf16 on CUDA)."""
    with _autocast(batch.device):
        return dense_features(bundle.model.visual, batch, mode, positions)


def whole_logits(bundle: CLIPBundle, batch: torch.Tensor, text: torch.Tensor,
                 feature_size: int, mode: str = "pixelclip",
                 positions: str = "size") -> torch.Tensor:
    """Normalised ``(B, 3, r, r)`` images → ``(B, C, s, s)`` logits, ``s`` = ``feature_size``
    (0: the feature grid itself, logits upsampled later, as SCLIP does)."""
    features = whole_features(bundle, batch, mode, positions)
    size = (feature_size, feature_size) if feature_size else tuple(features.shape[-2:])
    return features_to_logits(features, text, size)


def window_origins(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows covering ``[0, length)``; the last one ends at ``length``."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return [*starts, length - window]


def _centred_pad(length: int, step: int) -> tuple[int, int]:
    extra = -length % step
    return extra // 2, extra - extra // 2


def sliding_logits(bundle: CLIPBundle, image: torch.Tensor, text: torch.Tensor,
                   window: int, window_stride: int, feature_size: int,
                   mode: str = "pixelclip", batch_size: int = 16, positions: str = "size",
                   pad: bool = False) -> torch.Tensor:
    """Normalised ``(3, H, W)`` image → ``(C, H, W)`` logits averaged over overlapping
    ``window``² crops (a side shorter than ``window`` is cropped whole), each scored like a
    whole image, then upsampled to the crop. A crop off the patch grid loses its last partial
    patch, as SCLIP's patch embedding drops it, or with ``pad`` is zero-padded around its
    centre and its logits cut back, as ClearCLIP does."""
    _, height, width = image.shape
    crop_h, crop_w = min(window, height), min(window, width)
    step = stride(bundle.model.visual)
    if pad:
        (top, bottom), (left, right) = _centred_pad(crop_h, step), _centred_pad(crop_w, step)
        seen_h, seen_w = crop_h, crop_w
    else:
        top = bottom = left = right = 0
        seen_h, seen_w = crop_h // step * step, crop_w // step * step
    boxes = [(y, x) for y in window_origins(height, window, window_stride)
             for x in window_origins(width, window, window_stride)]
    total = torch.zeros(text.shape[0], height, width, device=image.device)
    count = torch.zeros(1, height, width, device=image.device)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i:i + batch_size]
        crops = torch.stack([image[:, y:y + seen_h, x:x + seen_w] for y, x in chunk])
        if pad:
            crops = F.pad(crops, (left, right, top, bottom))
        logits = whole_logits(bundle, crops, text, feature_size, mode, positions)
        for (y, x), part in zip(chunk, logits, strict=True):
            size = (top + crop_h + bottom, left + crop_w + right)  # the padded crop
            part = F.interpolate(part[None], size=size, mode="bilinear",
                                 align_corners=False)[0, :, top:top + crop_h, left:left + crop_w]
            total[:, y:y + crop_h, x:x + crop_w] += part
            count[:, y:y + crop_h, x:x + crop_w] += 1
    return total / count


def _slide_size(shape: tuple[int, ...], options: InferenceOptions) -> tuple[int, int]:
    short = options.slide_short_side or options.resolution
    return resized_shape(shape[0], shape[1], short, options.slide_max)


@torch.inference_mode()
def predict(bundle: CLIPBundle, text: torch.Tensor, images: Sequence[np.ndarray],
            options: InferenceOptions, device: torch.device,
            masks: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
    """Label maps (``uint8`` class ids, each at its image's size) for a batch of RGB images;
    ``text`` is :func:`classifier`'s; with ``masks`` (per image ``(N, H, W)`` bool or None)
    each mask is named as a whole. PAMR is guided by the image itself, or in sliding mode, as
    SCLIP's code does, by the network's resized input brought back to the image's size."""
    sizes = [img.shape[:2] for img in images]
    seen = [resize_shortest_edge(img, options.test_short, options.test_max) for img in images]
    if options.sliding_window:
        step = options.window_stride or max(1, options.resolution * 2 // 3)
        inputs = [to_input(img, _slide_size(img.shape, options), bundle, device, options.resize)
                  for img in seen]
        logits = [sliding_logits(bundle, x, text, options.resolution, step,
                                 options.feature_size, options.dense_mode,
                                 positions=options.positions, pad=options.pad_crops)
                  for x in inputs]
    else:
        side = (options.resolution, options.resolution)
        batch = torch.stack([to_input(img, side, bundle, device, options.resize)
                             for img in seen])
        logits = list(whole_logits(bundle, batch, text, options.feature_size,
                                   options.dense_mode, options.positions))
    out = []
    for i, (lg, size) in enumerate(zip(logits, sizes, strict=True)):
        up = F.interpolate(lg[None].float(), size=tuple(size), mode="bilinear",
                           align_corners=False)[0]
        if options.pamr_steps:
            if options.sliding_window:
                guide = F.interpolate(inputs[i][None], size=tuple(size), mode="bilinear",
                                      align_corners=False)[0]
            else:
                guide = torch.from_numpy(np.ascontiguousarray(images[i])).to(device)
                guide = guide.permute(2, 0, 1).float()
            up = pamr(guide, up, options.pamr_steps, options.pamr_dilations)
        if options.class_names:
            up = best_name(up, options.class_names)
        labels = paint_masks(up, masks[i] if masks is not None else None)
        out.append(labels.cpu().numpy().astype(np.uint8 if up.shape[0] <= 255 else np.uint16))
    return out


def label_map(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``(C, h, w)`` logits → argmax class ids at ``size`` (logits upsampled bilinearly)."""
    up = F.interpolate(logits[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
    dtype = np.uint8 if logits.shape[0] <= 255 else np.uint16
    return up.argmax(dim=0).cpu().numpy().astype(dtype)
