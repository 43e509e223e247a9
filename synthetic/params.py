"""Params sections of the embedded default: the synthetic world and the tiny CLIP's
pretraining (``synth`` and ``pretrain`` in params.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

from fields import bounded


@dataclass(frozen=True)
class SynthParams:
    out: str = "data/synthetic"
    train: int = bounded(3000, 1)  # unlabeled scenes for PixelCLIP
    val: int = bounded(100, 1)  # labelled scenes for evaluation
    web: int = bounded(12000, 0)  # captioned crops of other scenes, the tiny CLIP's "web data"
    size: int = bounded(128, 16)
    seed: int = 0
    # rendering processes; 0 = one per CPU core (the bytes do not change)
    workers: int = bounded(0, 0)


@dataclass(frozen=True)
class PretrainParams:
    """Contrastive pretraining of the tiny CLIP on synthetic captions (embedded default only)."""

    captions: str = "data/synthetic/web"
    out: str = "data/models/tinyclip"
    model: str = "TinyCLIP-ViT-8"  # an open_clip config name; the JSON lives in models/configs
    image_size: int = bounded(64, 8)
    steps: int = bounded(800, 1)
    batch_size: int = bounded(64, 2)
    lr: float = bounded(1e-3, 0.0)
    weight_decay: float = bounded(0.1, 0.0)
    warmup_steps: int = bounded(40, 0)
    seed: int = 0
    # Share of the patch-token average in the image embedding; the rest is the class token's
    # (1.0: average pooling alone). Needs a tower whose pooled output is its class token.
    patch_weight: float = bounded(0.75, 0.0, 1.0)
