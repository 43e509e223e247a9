"""``sam``: segment-anything's automatic mask generation (AMG), rewritten for throughput.

Same algorithm and settings as ``SamAutomaticMaskGenerator`` (a grid of point prompts per
crop → three masks per point → predicted-IoU and stability filters → box NMS), so in fp32 it
gives the stock masks exactly. What is faster:

* the image encoder runs under bf16/fp16 autocast on a GPU (``masks.sam.precision``); the
  prompt encoder and mask decoder stay fp32, since masks are thresholded logits;
* masks are filtered by predicted IoU at low resolution, *before* being upsampled to the
  image, so only survivors pay for the two bilinear resizes and the stability score;
* every mask becomes a COCO RLE as soon as it survives the filters (one device→host copy per
  batch instead of one per mask), so memory stays flat however many points are decoded;
* the small-region clean-up works one mask at a time instead of stacking them all.

Weights: ``masks.sam.checkpoint`` is a path to an official ``sam_vit_{b,l,h}`` ``.pth``. An
empty or missing path is an error naming the key. ``checkpoint: random`` builds the
architecture with random weights: it exists for tests and benchmarks only, never as a fallback.
``model_type: tiny`` (random only) is a 256-pixel, depth-2 SAM built from segment-anything's own
modules, for fast tests.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from segment_anything import sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.utils.amg import (
    MaskData,
    batch_iterator,
    batched_mask_to_box,
    build_all_layer_point_grids,
    calculate_stability_score,
    generate_crop_boxes,
    is_box_near_crop_edge,
    remove_small_regions,
    uncrop_boxes_xyxy,
    uncrop_masks,
    uncrop_points,
)
from segment_anything.utils.transforms import ResizeLongestSide
from torchvision.ops.boxes import batched_nms, box_area

from config import ConfigError, SamParams, check_fields, resolve_device, to_dict
from files import first_line, load_tensors
from pipeline.generators import Item, MaskSet, encoder_dtype
from pipeline.images import BadInput, LoadedImage
from shards.schema import Generator

VERSION = "1"
RANDOM = "random"  # masks.sam.checkpoint value that builds random weights (tests/bench only)


class SamGenerator:
    """Callable ``(item, image) -> MaskSet`` running :class:`FastAmg` on one device."""

    def __init__(self, params: SamParams, device: str = "auto", model: Sam | None = None) -> None:
        check_params(params)
        self.params = params
        self.device = resolve_device(device, "masks.device")
        model = model if model is not None else load_sam(params)
        self.amg = FastAmg(model.to(self.device).eval(), params)
        self.info = Generator("sam", to_dict(params), VERSION)

    def __call__(self, item: Item, image: LoadedImage) -> MaskSet:
        if min(image.rgb.shape[:2]) < 2:
            raise BadInput("image too small for SAM")
        return self.amg.generate(image.rgb)


def check_params(params: SamParams) -> None:
    """Raise :class:`ConfigError` naming the first invalid ``masks.sam`` key."""
    check_fields(params, "masks.sam")
    if params.model_type == "tiny" and params.checkpoint != RANDOM:
        raise ConfigError("masks.sam.model_type 'tiny' exists for tests only and needs "
                          f"masks.sam.checkpoint: {RANDOM}")
    if params.points_per_side < 1 or params.points_per_batch < 1:
        raise ConfigError("masks.sam.points_per_side and points_per_batch must be at least 1")


def load_sam(params: SamParams) -> Sam:
    """The SAM model of ``params``: official weights from ``masks.sam.checkpoint`` (CPU-mapped,
    ``weights_only``), or random weights when the checkpoint is ``"random"``."""
    if params.checkpoint == RANDOM:
        return build_random_sam(params.model_type)
    if not params.checkpoint:
        raise ConfigError(f"masks.sam.checkpoint is empty: set it to the path of the SAM "
                          f"{params.model_type} checkpoint (e.g. sam_{params.model_type}_*.pth)")
    path = Path(params.checkpoint)
    if not path.is_file():
        raise ConfigError(f"masks.sam.checkpoint: file not found: {path}")
    model = sam_model_registry[params.model_type](checkpoint=None)
    state = load_tensors(path, "masks.sam.checkpoint")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"masks.sam.checkpoint: {path} does not fit model_type "
                          f"'{params.model_type}' ({first_line(exc)})") from None
    return model


def build_random_sam(model_type: str, seed: int = 0) -> Sam:
    """A SAM with random weights (tests and benchmarks only; its masks mean nothing)."""
    torch.manual_seed(seed)
    if model_type == "tiny":
        return build_tiny_sam()
    return sam_model_registry[model_type](checkpoint=None)


def build_tiny_sam(image_size: int = 256, depth: int = 2, width: int = 64) -> Sam:
    """A small SAM from segment-anything's modules (random weights): for fast tests only."""
    embed = 256  # prompt/decoder width, as in every released SAM
    encoder = ImageEncoderViT(
        img_size=image_size, patch_size=16, embed_dim=width, depth=depth, num_heads=2,
        mlp_ratio=4, out_chans=embed, qkv_bias=True, use_rel_pos=True, window_size=4,
        global_attn_indexes=(depth - 1,), norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    grid = image_size // 16
    prompt = PromptEncoder(embed_dim=embed, image_embedding_size=(grid, grid),
                           input_image_size=(image_size, image_size), mask_in_chans=16)
    decoder = MaskDecoder(num_multimask_outputs=3, transformer_dim=embed, iou_head_depth=3,
                          iou_head_hidden_dim=256,
                          transformer=TwoWayTransformer(depth=2, embedding_dim=embed,
                                                        mlp_dim=512, num_heads=8))
    return Sam(image_encoder=encoder, prompt_encoder=prompt, mask_decoder=decoder,
               pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()


class FastAmg:
    """Automatic mask generation over a grid of point prompts (see the module docstring)."""

    def __init__(self, model: Sam, params: SamParams) -> None:
        self.model = model
        self.params = params
        self.transform = ResizeLongestSide(model.image_encoder.img_size)
        self.point_grids = build_all_layer_point_grids(
            params.points_per_side, params.crop_n_layers, params.crop_n_points_downscale_factor)
        self.device = next(model.parameters()).device
        self.encoder_dtype = encoder_dtype(params.precision, self.device)

    @torch.inference_mode()
    def generate(self, rgb: np.ndarray) -> MaskSet:
        """Masks of an RGB uint8 image ``(H, W, 3)``, best first, as COCO RLEs with scores."""
        p = self.params
        orig_size = rgb.shape[:2]
        crop_boxes, layer_idxs = generate_crop_boxes(orig_size, p.crop_n_layers,
                                                     p.crop_overlap_ratio)
        data = MaskData()
        for crop_box, layer_idx in zip(crop_boxes, layer_idxs, strict=True):
            data.cat(self._process_crop(rgb, crop_box, layer_idx, orig_size))
        if len(crop_boxes) > 1 and len(data["rles"]):
            scores = 1 / box_area(data["crop_boxes"])  # prefer masks from smaller crops
            keep = batched_nms(data["boxes"].float(), scores.to(data["boxes"].device),
                               _categories(data["boxes"]), iou_threshold=p.crop_nms_thresh)
            data.filter(keep)
        if p.min_mask_region_area > 0 and len(data["rles"]):
            data = clean_small_regions(data, p.min_mask_region_area,
                                       max(p.box_nms_thresh, p.crop_nms_thresh))
        if not len(data["rles"]):
            return MaskSet([])
        return MaskSet(list(data["rles"]), data["iou_preds"].float().cpu().tolist(),
                       data["stability_score"].float().cpu().tolist())

    def embed(self, rgb: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image embedding (fp32) and the resized input size, as ``SamPredictor.set_image``."""
        resized = self.transform.apply_image(rgb)
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        input_size = (int(tensor.shape[-2]), int(tensor.shape[-1]))
        pixels = self.model.preprocess(tensor)
        with torch.autocast(self.device.type, dtype=self.encoder_dtype,
                            enabled=self.encoder_dtype != torch.float32):
            features = self.model.image_encoder(pixels)
        return features.float(), input_size

    def _process_crop(self, rgb: np.ndarray, crop_box: list[int], layer_idx: int,
                      orig_size: tuple[int, int]) -> MaskData:
        x0, y0, x1, y1 = crop_box
        crop = rgb[y0:y1, x0:x1, :]
        crop_size = crop.shape[:2]
        features, input_size = self.embed(crop)
        points = self.point_grids[layer_idx] * np.array(crop_size)[None, ::-1]
        data = MaskData()
        for (batch,) in batch_iterator(self.params.points_per_batch, points):
            data.cat(self._process_batch(features, input_size, batch, crop_size, crop_box,
                                         orig_size))
        if not len(data["rles"]):
            return data
        keep = batched_nms(data["boxes"].float(), data["iou_preds"], _categories(data["boxes"]),
                           iou_threshold=self.params.box_nms_thresh)
        data.filter(keep)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        data["crop_boxes"] = torch.tensor([crop_box for _ in range(len(data["rles"]))])
        return data

    def _process_batch(self, features: torch.Tensor, input_size: tuple[int, int],
                       points: np.ndarray, crop_size: tuple[int, int], crop_box: list[int],
                       orig_size: tuple[int, int]) -> MaskData:
        p = self.params
        low_res, iou_preds = self._decode(features, points, crop_size)
        data = MaskData(low_res=low_res.flatten(0, 1), iou_preds=iou_preds.flatten(0, 1),
                        points=torch.as_tensor(points.repeat(low_res.shape[1], axis=0)))
        if p.pred_iou_thresh > 0.0:  # before upsampling: only survivors are resized
            data.filter(data["iou_preds"] > p.pred_iou_thresh)
        masks = self.model.postprocess_masks(data["low_res"][:, None], input_size, crop_size)
        data["masks"] = masks[:, 0]
        del data["low_res"]
        threshold = self.model.mask_threshold
        data["stability_score"] = calculate_stability_score(data["masks"], threshold,
                                                            p.stability_score_offset)
        if p.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= p.stability_score_thresh)
        data["masks"] = data["masks"] > threshold
        data["boxes"] = batched_mask_to_box(data["masks"])
        keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_size[1], orig_size[0]])
        if not torch.all(keep):
            data.filter(keep)
        data["rles"] = masks_to_coco_rle(uncrop_masks(data["masks"], crop_box, *orig_size))
        del data["masks"]
        return data

    def _decode(self, features: torch.Tensor, points: np.ndarray,
                crop_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-resolution mask logits ``(B, 3, 256, 256)`` and IoU predictions ``(B, 3)``."""
        coords = torch.as_tensor(self.transform.apply_coords(points, crop_size),
                                 device=self.device)
        labels = torch.ones(len(coords), dtype=torch.int, device=self.device)
        sparse, dense = self.model.prompt_encoder(points=(coords[:, None, :], labels[:, None]),
                                                  boxes=None, masks=None)
        return self.model.mask_decoder(
            image_embeddings=features, image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=True)


def masks_to_coco_rle(masks: torch.Tensor) -> list[dict]:
    """Boolean masks ``(N, H, W)`` (any device) → COCO RLEs with ``counts`` as str.

    Run boundaries are found on the device for all masks at once and copied to the host in
    one transfer; pycocotools compresses each count list.
    """
    n, height, width = masks.shape
    if n == 0:
        return []
    flat = masks.permute(0, 2, 1).flatten(1)  # column-major, as COCO
    changes = (flat[:, 1:] ^ flat[:, :-1]).nonzero().cpu().numpy()
    starts_on = flat[:, 0].cpu().numpy()
    per_mask = np.split(changes[:, 1], np.searchsorted(changes[:, 0], np.arange(1, n)))
    rles = []
    for first, idx in zip(starts_on, per_mask, strict=True):
        bounds = np.concatenate([[0], idx + 1, [height * width]])
        counts = ([0] if first else []) + np.diff(bounds).tolist()
        rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        rles.append({"size": [height, width], "counts": rle["counts"].decode("ascii")})
    return rles


def clean_small_regions(data: MaskData, min_area: int, nms_thresh: float) -> MaskData:
    """Remove holes and islands below ``min_area`` pixels, one mask at a time (as SAM's AMG,
    without stacking every mask), then drop duplicates by box NMS preferring unchanged masks."""
    rles, boxes, scores = [], [], []
    for rle in data["rles"]:
        mask = mask_utils.decode(_as_bytes(rle)).astype(bool)
        mask, holes = remove_small_regions(mask, min_area, mode="holes")
        mask, islands = remove_small_regions(mask, min_area, mode="islands")
        changed = holes or islands
        tensor = torch.as_tensor(mask)[None]
        boxes.append(batched_mask_to_box(tensor)[0])
        rles.append(masks_to_coco_rle(tensor)[0] if changed else rle)
        scores.append(0.0 if changed else 1.0)
    box_tensor = torch.stack(boxes)
    keep = batched_nms(box_tensor.float(), torch.as_tensor(scores), _categories(box_tensor),
                       iou_threshold=nms_thresh)
    data["rles"] = rles
    data["boxes"] = box_tensor
    data.filter(keep)
    return data


def _categories(boxes: torch.Tensor) -> torch.Tensor:
    """One NMS category for every box, on the boxes' device."""
    return torch.zeros(len(boxes), device=boxes.device)


def _as_bytes(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
