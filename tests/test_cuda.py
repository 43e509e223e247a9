"""GPU paths against their CPU / stock counterparts; skipped where no CUDA device is present.

Run on a GPU box with ``pytest tests/test_cuda.py``. Each test compares the CUDA result with one
computed on the CPU (or by the stock implementation) from the same weights and inputs.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator

from config import DinoParams, SamParams
from pipeline.generators.dino import DinoGenerator
from pipeline.generators.sam import FastAmg, build_random_sam
from shards import rle as rle_codec
from tests.masks_testdata import scene

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")


def best_match_iou(a: list[dict], b: list[dict]) -> float:
    """Mean over the RLEs of ``a`` of the IoU with their best match in ``b``."""
    return float(rle_codec.iou(a, b).max(axis=1).mean())


def test_mask_pool_on_cuda_equals_cpu() -> None:
    from train.clustering import mask_pool

    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(4, 64, 20, 20, generator=gen)
    masks = torch.rand(4, 12, 80, 80, generator=gen) > 0.7
    masks[2, 6:] = False
    assert torch.allclose(mask_pool(feats.to(CUDA), masks.to(CUDA)).cpu(),
                          mask_pool(feats, masks), atol=1e-4)


def test_fast_amg_on_cuda_matches_stock_amg() -> None:
    params = SamParams(model_type="tiny", checkpoint="random", points_per_side=8,
                       pred_iou_thresh=0.05, stability_score_thresh=0.3,
                       stability_score_offset=0.02, box_nms_thresh=1.0, precision="fp32")
    model = build_random_sam("tiny").to(CUDA)
    rgb = scene(1, 96, 128)
    knobs = {k: getattr(params, k) for k in (
        "points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
        "stability_score_offset", "box_nms_thresh")}
    stock = SamAutomaticMaskGenerator(model, output_mode="binary_mask", **knobs).generate(rgb)
    fast = FastAmg(model, params).generate(rgb)
    assert len(stock) > 0 and abs(len(fast.rles) - len(stock)) <= max(1, len(stock) // 20)
    theirs = rle_codec.encode(np.stack([a["segmentation"] for a in stock]))
    assert best_match_iou(fast.rles, theirs) >= 0.99 and best_match_iou(theirs, fast.rles) >= 0.99


def test_dino_on_cuda_partitions_like_cpu() -> None:
    params = DinoParams(model="vit_small_patch8_224.dino", checkpoint="random", input_size=64,
                        clusters=6, min_area_frac=0.01, kmeans_iters=10, precision="bf16")
    cpu = DinoGenerator(params, "cpu")
    gpu = DinoGenerator(params, "cuda", model=copy.deepcopy(cpu.model))
    rgb = scene(2, 72, 96)
    ours, ref = gpu.masks(rgb).rles, cpu.masks(rgb).rles
    stack = rle_codec.decode(ours, 72, 96)
    assert stack.any(axis=0).all() and not (stack.sum(axis=0) > 1).any()
    # bf16 features may move a few boundary patches between clusters, not whole regions
    assert best_match_iou(ref, ours) >= 0.8


def _step_metrics(shard_dir, tmp_path, device: str, amp: str,
                  steps: int) -> tuple[list, object, torch.Tensor]:
    from shards.reader import list_shards
    from tests.test_train_loop import tiny_cfg
    from train.data import batches
    from train.loop import build, train_step

    run = build(tiny_cfg(shard_dir, tmp_path / device / amp, device=device, amp=amp,
                         steps=steps))
    start = run.core.prompts.token_embeddings.detach().cpu().clone()
    data = batches(run.cfg, list_shards(shard_dir), 4, seed=0)
    metrics = [train_step(run, [next(data)], step) for step in range(steps)]
    return metrics, run, start


def test_train_step_on_cuda_equals_cpu_in_fp32(shard_dir, tmp_path) -> None:
    cpu, cpu_run, start = _step_metrics(shard_dir, tmp_path, "cpu", "none", 2)
    gpu, gpu_run, _ = _step_metrics(shard_dir, tmp_path, "cuda", "none", 2)
    assert gpu_run.device.type == "cuda"
    for a, b in zip(cpu, gpu, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3)
        assert b["used"] == a["used"]
    # cuDNN convolutions run in TF32 by default: the prompts' update agrees to ~1 %, not bits
    ref = cpu_run.core.prompts.token_embeddings.detach() - start
    got = gpu_run.core.prompts.token_embeddings.detach().cpu() - start
    assert ref.norm() > 0 and (got - ref).norm() < 0.05 * ref.norm()


def test_train_steps_on_cuda_in_bf16_stay_finite(shard_dir, tmp_path) -> None:
    metrics, run, _ = _step_metrics(shard_dir, tmp_path, "cuda", "bf16", 4)
    assert run.amp_dtype == torch.bfloat16
    assert all(np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"]) for m in metrics)


def test_evaluation_logits_on_cuda_follow_cpu() -> None:
    from evaluate.inference import text_classifier, to_input, whole_logits
    from models.clip import load_clip

    cpu = load_clip("TinyCLIP-ViT-8", "", "cpu")
    gpu = load_clip("TinyCLIP-ViT-8", "", CUDA)
    gpu.model.load_state_dict(cpu.model.state_dict())
    names = ["water", "sand", "tree", "car"]
    images = [scene(i, 72, 96) for i in range(3)]
    outs = []
    for bundle, device in ((cpu, torch.device("cpu")), (gpu, CUDA)):
        text = text_classifier(bundle, names)
        batch = torch.stack([to_input(img, (64, 64), bundle, device) for img in images])
        with torch.inference_mode():
            outs.append(whole_logits(bundle, batch, text, 16).float().cpu())
    ref, got = outs  # CUDA runs the tower in bf16: logits agree to bf16 precision
    assert torch.nn.functional.cosine_similarity(got.flatten(1), ref.flatten(1)).min() > 0.99
