"""Open-vocabulary inference (docs/method.md): class names → text classifier; image →
dense CLIP features (``models.clip.dense_features``, the path training uses) → cosine
similarity with the class embeddings → logits upsampled to label size → argmax.

Two modes: the whole image squashed to ``resolution``² (the paper's protocol), or sliding
``resolution``² windows over the image resized to a short side of ``slide_short_side``, window
logits averaged where they overlap. The logits at the image's size may then be refined
(``evaluate.refine``: PAMR, masks) before the argmax. :func:`options_for` turns the evaluate
params, an option of the results table and a benchmark into :class:`InferenceOptions`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from evaluate.class_names import IMAGENET_TEMPLATES, TEMPLATES, prompts_for
from evaluate.refine import paint_masks, pamr
from models.clip import CLIPBundle, encode_texts
from models.dense import dense_features, stride


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


def options_for(cfg, option=None, benchmark: str = "") -> InferenceOptions:
    """Inference options of ``cfg`` (an ``EvaluateParams``) with ``option`` (an
    ``EvalOption``, its empty fields taking ``cfg``'s) on ``benchmark``. The ``sclip``
    protocol fixes its own geometry and templates (short side 560 on Cityscapes)."""
    protocol = (option and option.protocol) or cfg.protocol
    mode = (option and option.dense_mode) or cfg.dense_mode
    pamr = option.pamr if option is not None else cfg.pamr
    steps = cfg.pamr_steps if pamr else 0
    if protocol == "sclip":
        return InferenceOptions(
            SCLIP_WINDOW, 0, True, SCLIP_STRIDE,
            SCLIP_SHORT_SIDE.get(benchmark, SCLIP_SHORT_SIDE[""]), mode,
            IMAGENET_TEMPLATES, steps, cfg.pamr_dilations)
    return InferenceOptions(cfg.resolution, cfg.feature_size, cfg.sliding_window,
                            cfg.window_stride, cfg.slide_short_side, mode, TEMPLATES, steps,
                            cfg.pamr_dilations)


SCLIP_WINDOW, SCLIP_STRIDE = 224, 112
SCLIP_SHORT_SIDE = {"": 336, "cityscapes": 560}


def check_resolution(bundle: CLIPBundle, options: InferenceOptions) -> None:
    """The input side must be a multiple of the tower's stride (dense features need a grid)."""
    step = stride(bundle.model.visual)
    if options.resolution % step:
        raise ValueError(f"evaluate.resolution={options.resolution} is not a multiple of the "
                         f"tower's stride {step}")


def text_classifier(bundle: CLIPBundle, class_names: Sequence[str],
                    templates: Sequence[str] = TEMPLATES, chunk: int = 512) -> torch.Tensor:
    """``(C, D)`` L2-normalised class embeddings, each the mean over the prompt templates."""
    texts = [p for name in class_names for p in prompts_for(name, tuple(templates))]
    parts = [encode_texts(bundle.model, bundle.tokenizer, texts[i:i + chunk])
             for i in range(0, len(texts), chunk)]
    per_template = torch.cat(parts).reshape(len(class_names), len(templates), -1)
    return F.normalize(per_template.mean(dim=1), dim=-1)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_input(image: np.ndarray, size: tuple[int, int], bundle: CLIPBundle,
             device: torch.device) -> torch.Tensor:
    """RGB uint8 ``(H, W, 3)`` → normalised float ``(3, *size)`` on ``device`` (bilinear)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).float() / 255
    x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False,
                      antialias=True)[0]
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


def whole_features(bundle: CLIPBundle, batch: torch.Tensor,
                   mode: str = "pixelclip") -> torch.Tensor:
    """Normalised ``(B, 3, r, r)`` images → dense features ``(B, D, h, w)`` (bf16 on CUDA)."""
    with _autocast(batch.device):
        return dense_features(bundle.model.visual, batch, mode)


def whole_logits(bundle: CLIPBundle, batch: torch.Tensor, text: torch.Tensor,
                 feature_size: int, mode: str = "pixelclip") -> torch.Tensor:
    """Normalised ``(B, 3, r, r)`` images → ``(B, C, s, s)`` logits, ``s`` = ``feature_size``
    (0: the feature grid itself, logits upsampled later, as SCLIP does)."""
    features = whole_features(bundle, batch, mode)
    size = (feature_size, feature_size) if feature_size else tuple(features.shape[-2:])
    return features_to_logits(features, text, size)


def window_origins(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows covering ``[0, length)``; the last one ends at ``length``."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return [*starts, length - window]


def sliding_logits(bundle: CLIPBundle, image: torch.Tensor, text: torch.Tensor,
                   window: int, stride: int, feature_size: int, mode: str = "pixelclip",
                   batch_size: int = 16) -> torch.Tensor:
    """Normalised ``(3, H, W)`` image (both sides ≥ ``window``) → ``(C, H, W)`` logits averaged
    over overlapping ``window``² crops (each crop scored like a whole image, then upsampled)."""
    _, height, width = image.shape
    boxes = [(y, x) for y in window_origins(height, window, stride)
             for x in window_origins(width, window, stride)]
    total = torch.zeros(text.shape[0], height, width, device=image.device)
    count = torch.zeros(1, height, width, device=image.device)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i:i + batch_size]
        crops = torch.stack([image[:, y:y + window, x:x + window] for y, x in chunk])
        logits = whole_logits(bundle, crops, text, feature_size, mode)
        for (y, x), part in zip(chunk, logits, strict=True):
            part = F.interpolate(part[None], size=(window, window), mode="bilinear",
                                 align_corners=False)[0]
            total[:, y:y + window, x:x + window] += part
            count[:, y:y + window, x:x + window] += 1
    return total / count


def _slide_size(shape: tuple[int, ...], options: InferenceOptions) -> tuple[int, int]:
    short = max(options.slide_short_side or options.resolution, options.resolution)
    scale = short / min(shape[0], shape[1])
    return max(round(shape[0] * scale), short), max(round(shape[1] * scale), short)


@torch.inference_mode()
def predict(bundle: CLIPBundle, text: torch.Tensor, images: Sequence[np.ndarray],
            options: InferenceOptions, device: torch.device,
            masks: Sequence[np.ndarray | None] | None = None) -> list[np.ndarray]:
    """Label maps (``uint8`` class ids, each at its image's size) for a batch of RGB images;
    with ``masks`` (per image ``(N, H, W)`` bool or None) each mask is named as a whole."""
    sizes = [img.shape[:2] for img in images]
    if options.sliding_window:
        stride = options.window_stride or max(1, options.resolution * 2 // 3)
        logits = [sliding_logits(bundle, to_input(img, _slide_size(img.shape, options), bundle,
                                                  device), text, options.resolution, stride,
                                 options.feature_size, options.dense_mode)
                  for img in images]
    else:
        side = (options.resolution, options.resolution)
        batch = torch.stack([to_input(img, side, bundle, device) for img in images])
        logits = list(whole_logits(bundle, batch, text, options.feature_size,
                                   options.dense_mode))
    out = []
    for i, (lg, size) in enumerate(zip(logits, sizes, strict=True)):
        up = F.interpolate(lg[None].float(), size=tuple(size), mode="bilinear",
                           align_corners=False)[0]
        if options.pamr_steps:
            image = torch.from_numpy(np.ascontiguousarray(images[i])).to(device)
            up = pamr(image.permute(2, 0, 1).float(), up, options.pamr_steps,
                      options.pamr_dilations)
        labels = paint_masks(up, masks[i] if masks is not None else None)
        out.append(labels.cpu().numpy().astype(np.uint8 if lg.shape[0] <= 255 else np.uint16))
    return out


def label_map(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``(C, h, w)`` logits → argmax class ids at ``size`` (logits upsampled bilinearly)."""
    up = F.interpolate(logits[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
    dtype = np.uint8 if logits.shape[0] <= 255 else np.uint16
    return up.argmax(dim=0).cpu().numpy().astype(dtype)
