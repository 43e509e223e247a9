"""``sam2``: SAM 2.1's automatic mask generation, with its stock settings, made cheaper.

The masks are those of ``sam2``'s ``SAM2AutomaticMaskGenerator`` with the same settings (in
fp32 bit for bit: tested). What is faster:

* the image encoder runs under bf16/fp16 autocast on a GPU (``masks.sam2.precision``); the
  prompt encoder and mask decoder stay fp32, since masks are thresholded logits;
* masks are filtered by predicted IoU at the decoder's 256² resolution, before the upsampling
  to the image that the stock generator does for every mask, so only survivors pay for it;
* every batch of points ends as run lengths (the stock generator's own per-batch RLE), so
  memory stays flat however many points are decoded.

Weights: ``masks.sam2.checkpoint`` is a path to an official ``sam2.1_hiera_*.pt``; empty or
missing is an error naming the key. ``checkpoint: random`` builds the architecture with random
weights, for tests and benchmarks only, never as a fallback.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
from sam2.build_sam import build_sam2
from sam2.sam2_image_predictor import SAM2ImagePredictor
from sam2.utils.amg import (
    MaskData,
    batched_mask_to_box,
    calculate_stability_score,
    is_box_near_crop_edge,
    mask_to_rle_pytorch,
    uncrop_masks,
)

from config import ConfigError, Sam2Params, resolve_device, to_dict
from files import first_line
from pipeline.generators import Item, MaskSet, encoder_dtype
from pipeline.images import BadInput, LoadedImage
from shards.schema import Generator

VERSION = "1"
RANDOM = "random"  # masks.sam2.checkpoint value that builds random weights (tests/bench only)
AMG_KEYS = ("points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
            "stability_score_offset", "mask_threshold", "box_nms_thresh", "crop_n_layers",
            "crop_nms_thresh", "crop_overlap_ratio", "crop_n_points_downscale_factor",
            "min_mask_region_area", "use_m2m", "multimask_output")


class Sam2Generator:
    """Callable ``(item, image) -> MaskSet`` running :class:`FastSam2Amg` on one device."""

    def __init__(self, params: Sam2Params, device: str = "auto",
                 model: torch.nn.Module | None = None) -> None:
        self.device = resolve_device(device, "masks.device")
        model = model if model is not None else load_sam2(params, self.device)
        self.amg = FastSam2Amg(model.to(self.device).eval(), params,
                               encoder_dtype(params.precision, self.device))
        self.info = Generator("sam2", to_dict(params), VERSION)

    def __call__(self, item: Item, image: LoadedImage) -> MaskSet:
        if min(image.rgb.shape[:2]) < 2:
            raise BadInput("image too small for SAM 2")
        rgb = image.rgb if image.rgb.flags.writeable else image.rgb.copy()  # torch wants it
        found = self.amg.generate(rgb)
        return MaskSet([{"size": r["segmentation"]["size"],
                         "counts": r["segmentation"]["counts"]} for r in found],
                       [float(r["predicted_iou"]) for r in found],
                       [float(r["stability_score"]) for r in found])


def amg_settings(params: Sam2Params) -> dict:
    """``masks.sam2``'s keys as ``SAM2AutomaticMaskGenerator`` takes them."""
    return {key: getattr(params, key) for key in AMG_KEYS}


def load_sam2(params: Sam2Params, device: torch.device) -> torch.nn.Module:
    """SAM 2.1 ``params.model`` with official weights from ``masks.sam2.checkpoint``, or random
    weights when the checkpoint is ``"random"``."""
    config = f"configs/sam2.1/sam2.1_{params.model}.yaml"
    if params.checkpoint == RANDOM:
        torch.manual_seed(0)
        return build_sam2(config, None, device=str(device))
    if not params.checkpoint:
        raise ConfigError(f"masks.sam2.checkpoint is empty: set it to the path of "
                          f"sam2.1_{params.model}.pt")
    path = Path(params.checkpoint)
    if not path.is_file():
        raise ConfigError(f"masks.sam2.checkpoint: file not found: {path}")
    try:
        return build_sam2(config, str(path), device=str(device))
    except Exception as exc:  # noqa: BLE001 - a wrong model, or bytes torch.load cannot read
        raise ConfigError(f"masks.sam2.checkpoint: {path} does not fit sam2.1_{params.model} "
                          f"({first_line(exc)})") from None


class _Predictor(SAM2ImagePredictor):
    """The stock predictor with the image encoder under autocast (features kept in fp32)."""

    dtype = torch.float32

    def set_image(self, image: np.ndarray) -> None:
        on = self.dtype != torch.float32
        with torch.autocast(self.device.type, dtype=self.dtype) if on else nullcontext():
            super().set_image(image)
        if on:
            self._features = {k: [f.float() for f in v] if isinstance(v, list) else v.float()
                              for k, v in self._features.items()}


class FastSam2Amg(SAM2AutomaticMaskGenerator):
    """``SAM2AutomaticMaskGenerator`` with COCO RLE output, the encoder under ``dtype`` and
    the predicted-IoU filter before the upsampling (see the module's docstring)."""

    def __init__(self, model: torch.nn.Module, params: Sam2Params,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__(model, output_mode="coco_rle", **amg_settings(params))
        predictor = _Predictor(model)
        predictor.dtype = dtype
        self.predictor = predictor

    def _process_batch(self, points: np.ndarray, im_size: tuple[int, ...],
                       crop_box: list[int], orig_size: tuple[int, ...],
                       normalize: bool = False) -> MaskData:
        if self.use_m2m:  # the refinement needs every mask's logits: the stock path
            return super()._process_batch(points, im_size, crop_box, orig_size, normalize)
        predictor = self.predictor
        points = torch.as_tensor(points, dtype=torch.float32, device=predictor.device)
        coords = predictor._transforms.transform_coords(points, normalize=normalize,
                                                        orig_hw=im_size)
        labels = torch.ones(coords.shape[0], dtype=torch.int, device=coords.device)
        low_res, iou = self._decode(coords[:, None, :], labels[:, None])
        data = MaskData(low_res=low_res.flatten(0, 1), iou_preds=iou.flatten(0, 1),
                        points=points.repeat_interleave(low_res.shape[1], dim=0))
        if self.pred_iou_thresh > 0.0:
            data.filter(data["iou_preds"] > self.pred_iou_thresh)
        masks = predictor._transforms.postprocess_masks(data["low_res"][:, None],
                                                        predictor._orig_hw[-1])[:, 0]
        del data["low_res"]
        data["stability_score"] = calculate_stability_score(masks, self.mask_threshold,
                                                            self.stability_score_offset)
        keep = data["stability_score"] >= self.stability_score_thresh
        if self.stability_score_thresh > 0.0:
            data.filter(keep)
            masks = masks[keep]
        masks = masks > self.mask_threshold
        data["boxes"] = batched_mask_to_box(masks)
        keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_size[1], orig_size[0]])
        if not torch.all(keep):
            data.filter(keep)
            masks = masks[keep]
        data["rles"] = mask_to_rle_pytorch(uncrop_masks(masks, crop_box, *orig_size))
        return data

    def _decode(self, coords: torch.Tensor, labels: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask decoder's 256² logits and predicted IoUs of point prompts (the stock
        predictor's ``_predict`` without its upsampling to the image)."""
        model, features = self.predictor.model, self.predictor._features
        sparse, dense = model.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        low_res, iou, _, _ = model.sam_mask_decoder(
            image_embeddings=features["image_embed"][-1].unsqueeze(0),
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=self.multimask_output, repeat_image=coords.shape[0] > 1,
            high_res_features=[f[-1].unsqueeze(0) for f in features["high_res_feats"]])
        return low_res, iou
