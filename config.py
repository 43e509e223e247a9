"""Typed mirror of ``params.yaml``: the one source of configuration.

Every section is a frozen dataclass. Loading rejects unknown keys and wrong types with a
one-line error naming the key, so a typo in ``params.yaml`` never passes silently. CLI flags
override single dotted keys (``masks.out=...``) through :func:`apply_overrides`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS = Path(__file__).resolve().parent / "params.yaml"
# How the last ViT block yields dense features (docs/method.md): the official PixelCLIP path
# adds the class token's input to every token, MaskCLIP's adds each token's own.
DENSE_MODES = ("pixelclip", "maskclip")


class ConfigError(ValueError):
    """A params file or override that does not match the dataclasses."""


def choice(default: str, options: tuple[str, ...]) -> Any:
    """A string field that must be one of ``options`` (checked wherever params are loaded)."""
    return field(default=default, metadata={"choices": tuple(options)})


def bounded(default: Any, low: float | None = None, high: float | None = None) -> Any:
    """A number field (or each item of a tuple field) that must lie in ``[low, high]``."""
    return field(default=default, metadata={"low": low, "high": high})


@dataclass(frozen=True)
class SynthParams:
    out: str = "data/synthetic"
    train: int = 3000  # unlabeled scenes for PixelCLIP
    val: int = 100  # labelled scenes for evaluation
    web: int = 12000  # captioned crops of other scenes, the tiny CLIP's "web data"
    size: int = 128
    seed: int = 0
    workers: int = 0  # rendering processes; 0 = one per CPU core (the bytes do not change)


@dataclass(frozen=True)
class SamParams:
    """segment-anything automatic mask generation; knobs named and defaulted as in SAM's AMG."""

    model_type: str = "vit_h"  # vit_b | vit_l | vit_h | tiny (tiny: tests, random weights only)
    checkpoint: str = ""  # path to sam_vit_*.pth; "random" = random init (tests/bench only)
    points_per_side: int = 32
    points_per_batch: int = 64  # speed/memory only; masks do not depend on it
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 0.3413333333333333  # 512 / 1500, SAM's default
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0
    precision: str = "bf16"  # fp32 | fp16 | bf16: image encoder on GPU; CPU always runs fp32


@dataclass(frozen=True)
class DinoParams:
    model: str = "vit_small_patch8_224.dino"
    checkpoint: str = ""
    input_size: int = 224
    clusters: int = 16  # k-means clusters per image
    position_weight: float = 0.0  # weight of (y, x) appended to unit-norm patch features
    min_area_frac: float = 0.002  # pieces smaller than this fraction of the image
    small_regions: str = "merge"  # merge (into the nearest region) | drop
    split_components: bool = True  # one mask per connected piece of a cluster
    kmeans_iters: int = 20
    seed: int = 0
    precision: str = "bf16"  # fp32 | fp16 | bf16 (GPU only; CPU always runs fp32)


@dataclass(frozen=True)
class SuperpixelParams:
    method: str = "felzenszwalb"  # felzenszwalb | slic
    scale: float = 100.0  # felzenszwalb: larger = bigger regions
    sigma: float = 0.8
    min_size: int = 50  # felzenszwalb: smallest component, in work-size pixels
    n_segments: int = 100  # slic
    compactness: float = 10.0  # slic
    levels: int = 2  # granularities (scale x4 or segments /4 per level), masks overlap
    work_side: int = 512  # segment a copy at most this long; masks come back at full size
    min_area_frac: float = 0.002  # pieces smaller than this fraction of the image
    small_regions: str = "merge"  # merge (into the nearest region) | drop


@dataclass(frozen=True)
class MasksParams:
    generator: str = "sa1b"  # sa1b | sam | dino | superpixel
    input: str = "data/synthetic/train/images"
    out: str = "data/shards/synthetic"
    split: str = "train"
    shard_size: int = 200  # samples per shard
    shard_max_bytes: int = 1_000_000_000  # planned from source file sizes
    max_side: int = 0  # 0 keeps the source resolution
    max_pixels: int = 100_000_000  # larger images are rejected as absurd
    min_side: int = 8  # images with a shorter side are rejected as absurd
    workers: int = 1  # >1 starts a dask LocalCluster
    scheduler: str = ""  # address of an existing dask scheduler
    device: str = "auto"  # auto | cpu | cuda (each dask worker gets its own GPU)
    sam: SamParams = field(default_factory=SamParams)
    dino: DinoParams = field(default_factory=DinoParams)
    superpixel: SuperpixelParams = field(default_factory=SuperpixelParams)


@dataclass(frozen=True)
class PretrainParams:
    """Contrastive pretraining of the tiny CLIP on synthetic captions (embedded default only)."""

    captions: str = "data/synthetic/web"
    out: str = "data/models/tinyclip"
    model: str = "TinyCLIP-ViT-8"  # an open_clip config name; the JSON lives in train/model_configs
    image_size: int = 64
    steps: int = 800
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 40
    seed: int = 0
    # Share of the patch-token average in the image embedding; the rest is the class token's
    # (1.0: average pooling alone). Needs a tower whose pooled output is its class token.
    patch_weight: float = 0.75


@dataclass(frozen=True)
class TrainParams:
    """PixelCLIP fine-tuning (METHOD.md); defaults sized for the embedded synthetic world."""

    shards: str = "data/shards/synthetic"
    out: str = "data/models/pixelclip"
    clip_model: str = "TinyCLIP-ViT-8"
    clip_pretrained: str = "data/models/tinyclip/final.pt"  # open_clip tag or local path
    # 1.5x the tiny CLIP's 64² pretraining size, as the paper runs 224² CLIP at 320²
    clip_resolution: int = 96
    mask_resolution: int = 32  # the head's 48² logits (4x the 12x12 grid) are resized to it
    max_masks: int = 512
    num_prompts: int = 20  # k; ~6 masks/image x batch 16 gives ~5 masks per prompt
    prompt_length: int = 4
    prompt_template: str = "A photo of a {} in the scene"  # {} takes the learnable tokens
    # words the prompts start from: a pretrain vocab.json (the tiny CLIP knows only the words of
    # its captions), or "" = the whole tokenizer vocabulary (the paper, for OpenAI CLIP)
    prompt_vocab: str = "data/models/tinyclip/vocab.json"
    momentum: float = 0.999  # gamma
    logit_scale: float = 100.0  # epsilon
    sinkhorn_iters: int = 3
    trainable: str = "attention"  # attention | full | none
    dense_mode: str = choice("maskclip", DENSE_MODES)  # params.yaml says why not pixelclip
    head_widths: tuple[int, int, int] = (16, 16, 8)  # paper: 64, 64, 32 (4x the CPU cost)
    use_clustering: bool = True  # ablation switch
    use_momentum: bool = True  # ablation switch
    lr: float = 1e-3
    lr_visual_mult: float = 1.0  # paper 0.01 over 10k steps; here 300 steps
    lr_prompt_mult: float = 10.0
    weight_decay: float = 1e-4
    warmup_steps: int = 0
    visual_delay_steps: int = 50  # image tower frozen this long: prompts settle on clusters first
    end_lr_factor: float = 0.0
    grad_clip: float = 0.01
    batch_size: int = 16  # 96² steps cost 2x those at 64²: half the batch fits the budget
    grad_accum: int = 1
    steps: int = 300
    # random_resized: a box of crop_scale of the area, aspect 3:4-4:3 (the embedded default);
    # official: short side to resize_short (long side <= resize_max), a random crop_size² crop
    crop: str = choice("random_resized", ("random_resized", "official"))
    crop_scale: tuple[float, float] = bounded((0.5, 1.0), 0.0, 1.0)
    resize_short: int = bounded(1024, 1)
    resize_max: int = bounded(1333, 0)  # 0 = no limit
    crop_size: int = bounded(640, 1)
    color_aug_ssd: bool = False  # detectron2's ColorAugSSD on the view both encoders see
    # Student view: jitter, greyscale, blur, cutout (teacher: plain). Off by default: colour is
    # what names a synthetic class, and jitter/greyscale cost about 4 mIoU there (RESULTS.md).
    strong_aug: bool = False
    jitter: float = bounded(0.4, 0.0, 1.0)  # brightness/contrast/saturation in 1 ± jitter
    hue_jitter: float = bounded(0.0, 0.0, 0.5)  # ± turns of hue; 0: hue names synthetic classes
    jitter_p: float = bounded(0.8, 0.0, 1.0)
    grayscale_p: float = bounded(0.2, 0.0, 1.0)
    blur_p: float = bounded(0.5, 0.0, 1.0)
    blur_sigma: tuple[float, float] = bounded((0.1, 1.0), 0.0)  # pixels of the crop view
    cutout: tuple[float, float] = bounded((0.1, 0.5), 0.0, 1.0)  # box sides; (0, 0) = off
    antialias: bool = True  # views resized to clip_resolution with an antialiasing filter
    shuffle_buffer: int = 256
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "bf16"  # bf16 | fp16 | none (GPU only)
    checkpoint_every: int = 100
    log_every: int = 10
    resume: str = ""  # "" | latest | a checkpoint path
    seed: int = 0


@dataclass(frozen=True)
class BenchmarkRoots:
    """Roots of the real benchmarks in detectron2/CAT-Seg layout; empty = skipped."""

    coco_stuff: str = ""
    ade20k_150: str = ""
    pascal_context_59: str = ""
    cityscapes: str = ""
    voc20: str = ""


@dataclass(frozen=True)
class EvaluateParams:
    """Baseline (untuned CLIP) and checkpoint scored side by side (METHOD.md, Inference)."""

    checkpoint: str = "data/models/pixelclip/final.pt"  # "" = score the baseline alone
    baseline: str = "data/models/tinyclip/final.pt"  # the untuned CLIP: tag, path, "" = random
    clip_model: str = "TinyCLIP-ViT-8"
    resolution: int = 96  # whole image squashed to resolution², or the sliding-window side
    feature_size: int = 64  # dense features upsampled to this grid before the text similarity
    dense_mode: str = choice("maskclip", DENSE_MODES)  # the last block's dense path
    synthetic: str = "data/synthetic"
    roots: BenchmarkRoots = field(default_factory=BenchmarkRoots)
    max_images: int = 0  # per benchmark, 0 = all
    sliding_window: bool = False
    window_stride: int = 0  # 0 = resolution * 2 / 3
    slide_short_side: int = 0  # sliding: image short side before windowing, 0 = resolution
    batch_size: int = 8
    device: str = "auto"  # auto | cpu | cuda
    metrics: str = "metrics/eval.json"
    per_class: str = "metrics/per_class.json"
    predictions: str = ""  # folder for predicted label PNGs, "" = not written
    plots: str = "plots"
    num_plot_images: int = 6


@dataclass(frozen=True)
class Params:
    seed: int = 0
    synth: SynthParams = field(default_factory=SynthParams)
    masks: MasksParams = field(default_factory=MasksParams)
    pretrain: PretrainParams = field(default_factory=PretrainParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)


# --------------------------------------------------------------------------- loading


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'params'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key '{_join(where, unknown[0])}'")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {k: _checked(fields[k], _coerce(hints[k], v, _join(where, k)), _join(where, k))
              for k, v in data.items()}
    return cls(**kwargs)


def _checked(fld: dataclasses.Field, value: Any, where: str) -> Any:
    """``value`` if it satisfies the field's ``choice``/``bounded`` metadata, else ConfigError."""
    options = fld.metadata.get("choices")
    if options is not None and value not in options:
        raise ConfigError(f"'{where}' must be one of {', '.join(options)}, got {value!r}")
    low, high = fld.metadata.get("low"), fld.metadata.get("high")
    for item in value if isinstance(value, (list, tuple)) else (value,):
        if (low is not None and item < low) or (high is not None and item > high):
            span = f"[{low}, {high}]" if high is not None else f">= {low}"
            raise ConfigError(f"'{where}' must be {span}, got {item!r}")
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value or {}, where)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(args[0], value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{where}' must be a list, got {value!r}")
        args = typing.get_args(hint)
        fixed = origin is tuple and args and Ellipsis not in args
        if fixed and len(value) != len(args):
            raise ConfigError(f"'{where}' must have {len(args)} items, got {list(value)!r}")
        (item,) = args[:1] or (Any,)
        return origin(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"'{where}' must be {hint.__name__}, got {value!r}")
    return value


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: dict[str, Any] | None = None):
    """Read ``params.yaml`` into :class:`Params`, then apply dotted-key overrides."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    try:
        return apply_overrides(from_dict(Params, raw), overrides or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def apply_overrides(obj: Any, overrides: dict[str, Any]) -> Any:
    """Return a copy of a dataclass tree with ``{"a.b.c": value}`` overrides applied."""
    for dotted, value in overrides.items():
        obj = _replace_path(obj, dotted.split("."), value, dotted)
    return obj


def _replace_path(obj: Any, keys: list[str], value: Any, dotted: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(obj)}
    if keys[0] not in names:
        raise ConfigError(f"unknown key '{dotted}'")
    hint = typing.get_type_hints(type(obj))[keys[0]]
    if len(keys) == 1:
        new = _checked(names[keys[0]], _coerce(hint, value, dotted), dotted)
    else:
        new = _replace_path(getattr(obj, keys[0]), keys[1:], value, dotted)
    return dataclasses.replace(obj, **{keys[0]: new})


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-dict view of a params dataclass (what gets written next to every output)."""
    return dataclasses.asdict(obj)



def resolve_device(name: str, key: str):
    """A params device value → ``torch.device``: ``auto`` is CUDA when present, else CPU;
    ``cuda[:N]`` without a GPU, or any other value, is a one-line error naming ``key``."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ConfigError(f"{key}: '{name}' is not auto, cpu or cuda[:N]")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}: '{name}' requested but no CUDA device is available")
    return torch.device(name)


def parse_sets(sets: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` → ``{"a.b": 1, "c": "x"}`` (values parsed as YAML scalars)."""
    out = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got '{item}'")
        out[key.strip()] = yaml.safe_load(value) if value else ""
    return out


def stage_params(params_path: str | Path, section: str, sets: tuple[str, ...],
                 flags: dict[str, Any]) -> Any:
    """One stage's params: ``params.yaml`` ← ``--set`` overrides ← the command's own flags.

    ``flags`` maps keys of ``section`` to CLI values; ``None`` means "not given".
    """
    overrides = parse_sets(sets)
    overrides.update({f"{section}.{k}": v for k, v in flags.items() if v is not None})
    return getattr(load_params(params_path, overrides), section)
