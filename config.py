"""Typed mirror of ``params.yaml``: the one source of configuration.

Every section is a frozen dataclass. Loading rejects unknown keys and wrong types with a
one-line error naming the key, so a typo in ``params.yaml`` never passes silently. CLI flags
override single dotted keys (``masks.out=...``) through :func:`apply_overrides`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fields import ConfigError, bounded, choice, device_field
from synthetic.params import PretrainParams, SynthParams

DEFAULT_PARAMS = Path(__file__).resolve().parent / "params.yaml"
# How the last ViT block yields dense features (docs/method.md): the official PixelCLIP path
# adds the class token's input to every token, MaskCLIP's adds each token's own; ClearCLIP,
# SCLIP and NACLIP change its attention (published training-free; here training can go
# through them too, RESULTS.md).
DENSE_MODES = ("pixelclip", "maskclip", "clearclip", "sclip", "naclip")


PRECISIONS = ("fp32", "fp16", "bf16")
SMALL_REGIONS = ("merge", "drop")


@dataclass(frozen=True)
class SamParams:
    """segment-anything automatic mask generation; knobs named and defaulted as in SAM's AMG."""

    # tiny: for tests, random weights only
    model_type: str = choice("vit_h", ("vit_b", "vit_l", "vit_h", "tiny"))
    checkpoint: str = ""  # path to sam_vit_*.pth; "random" = random init (tests/bench only)
    points_per_side: int = bounded(32, 1)
    points_per_batch: int = bounded(64, 1)  # speed/memory only; masks do not depend on it
    pred_iou_thresh: float = bounded(0.88, 0.0)
    stability_score_thresh: float = bounded(0.95, 0.0, 1.0)
    stability_score_offset: float = 1.0
    box_nms_thresh: float = bounded(0.7, 0.0, 1.0)
    crop_n_layers: int = bounded(0, 0)
    crop_nms_thresh: float = bounded(0.7, 0.0, 1.0)
    crop_overlap_ratio: float = bounded(0.3413333333333333, 0.0, 1.0)  # 512 / 1500, SAM's default
    crop_n_points_downscale_factor: int = bounded(1, 1)
    min_mask_region_area: int = bounded(0, 0)
    precision: str = choice("bf16", PRECISIONS)  # image encoder on GPU; CPU always runs fp32


SAM2_MODELS = ("hiera_t", "hiera_s", "hiera_b+", "hiera_l")


@dataclass(frozen=True)
class Sam2Params:
    """SAM 2.1's automatic mask generation; knobs named and defaulted as its AMG's."""

    model: str = choice("hiera_l", SAM2_MODELS)  # the sam2.1_<model>.yaml config of the wheel
    checkpoint: str = ""  # path to sam2.1_<model>.pt; "random" = random init (tests/bench only)
    points_per_side: int = bounded(32, 1)
    points_per_batch: int = bounded(64, 1)  # speed/memory only; masks do not depend on it
    pred_iou_thresh: float = bounded(0.8, 0.0)
    stability_score_thresh: float = bounded(0.95, 0.0, 1.0)
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = bounded(0.7, 0.0, 1.0)
    crop_n_layers: int = bounded(0, 0)
    crop_nms_thresh: float = bounded(0.7, 0.0, 1.0)
    crop_overlap_ratio: float = bounded(0.3413333333333333, 0.0, 1.0)  # 512 / 1500
    crop_n_points_downscale_factor: int = bounded(1, 1)
    min_mask_region_area: int = bounded(0, 0)
    use_m2m: bool = False  # one refinement step from each mask's own logits
    multimask_output: bool = True
    precision: str = choice("bf16", PRECISIONS)  # image encoder on GPU; CPU always runs fp32


@dataclass(frozen=True)
class DinoParams:
    model: str = "vit_small_patch8_224.dino"
    checkpoint: str = ""
    input_size: int = bounded(224, 14)
    clusters: int = bounded(16, 1)  # k-means clusters per image
    # weight of (y, x) appended to unit-norm patch features
    position_weight: float = bounded(0.0, 0.0)
    min_area_frac: float = bounded(0.002, 0.0, 1.0)  # pieces smaller than this share
    small_regions: str = choice("merge", SMALL_REGIONS)  # merge into the nearest | drop
    split_components: bool = True  # one mask per connected piece of a cluster
    kmeans_iters: int = bounded(20, 1)
    seed: int = 0
    precision: str = choice("bf16", PRECISIONS)  # (GPU only; CPU always runs fp32)


@dataclass(frozen=True)
class SuperpixelParams:
    method: str = choice("felzenszwalb", ("felzenszwalb", "slic"))
    scale: float = bounded(100.0, 0.0)  # felzenszwalb: larger = bigger regions
    sigma: float = bounded(0.8, 0.0)
    min_size: int = bounded(50, 1)  # felzenszwalb: smallest component, in work-size pixels
    n_segments: int = bounded(100, 1)  # slic
    compactness: float = bounded(10.0, 0.0)  # slic
    levels: int = bounded(2, 1)  # granularities (scale x4 or segments /4 per level), masks overlap
    # segment a copy at most this long; masks come back at full size
    work_side: int = bounded(512, 16)
    min_area_frac: float = bounded(0.002, 0.0, 1.0)  # pieces smaller than this share
    small_regions: str = choice("merge", SMALL_REGIONS)  # merge into the nearest | drop


@dataclass(frozen=True)
class MasksParams:
    generator: str = choice("sa1b", ("sa1b", "sam", "sam2", "dino", "superpixel"))
    input: str = "data/synthetic/train/images"
    out: str = "data/shards/synthetic"
    split: str = "train"
    shard_size: int = bounded(200, 1)  # samples per shard
    shard_max_bytes: int = bounded(1_000_000_000, 1)  # planned from source file sizes
    max_side: int = bounded(0, 0)  # 0 keeps the source resolution
    max_pixels: int = bounded(100_000_000, 1)  # larger images are rejected as absurd
    min_side: int = bounded(8, 1)  # images with a shorter side are rejected as absurd
    workers: int = bounded(1, 1)  # >1 starts a dask LocalCluster
    scheduler: str = ""  # address of an existing dask scheduler
    device: str = device_field()  # each dask worker gets its own GPU)
    sam: SamParams = field(default_factory=SamParams)
    sam2: Sam2Params = field(default_factory=Sam2Params)
    dino: DinoParams = field(default_factory=DinoParams)
    superpixel: SuperpixelParams = field(default_factory=SuperpixelParams)


@dataclass(frozen=True)
class TrainParams:
    """PixelCLIP fine-tuning (docs/method.md); defaults sized for the embedded synthetic world."""

    shards: str = "data/shards/synthetic"
    out: str = "data/models/pixelclip"
    clip_model: str = "TinyCLIP-ViT-8"
    clip_pretrained: str = "data/models/tinyclip/final.pt"  # open_clip tag or local path
    # 1.5x the tiny CLIP's 64² pretraining size, as the paper runs 224² CLIP at 320²
    clip_resolution: int = bounded(96, 8)
    # the head's 48² logits (4x the 12x12 grid) are resized to it
    mask_resolution: int = bounded(32, 4)
    max_masks: int = bounded(512, 1)
    num_prompts: int = bounded(20, 2)  # k; ~6 masks/image x batch 16 gives ~5 masks per prompt
    prompt_length: int = bounded(4, 1)
    prompt_template: str = "A photo of a {} in the scene"  # {} takes the learnable tokens
    # words the prompts start from: a pretrain vocab.json (the tiny CLIP knows only the words of
    # its captions), or "" = the whole tokenizer vocabulary (the paper, for OpenAI CLIP)
    prompt_vocab: str = "data/models/tinyclip/vocab.json"
    momentum: float = bounded(0.999, 0.0, 1.0)  # gamma
    logit_scale: float = bounded(100.0, 0.0)  # epsilon
    sinkhorn_iters: int = bounded(3, 0)
    trainable: str = choice("attention", ("attention", "full", "none"))
    dense_mode: str = choice("maskclip", DENSE_MODES)  # docs/method.md says why
    # the block the teacher clusters masks through; "" = dense_mode (the official code)
    teacher_dense_mode: str = choice("", ("", *DENSE_MODES))
    # paper: 64, 64, 32 (4x the CPU cost)
    head_widths: tuple[int, int, int] = bounded((16, 16, 8), 1)
    use_clustering: bool = True  # ablation switch
    use_momentum: bool = True  # ablation switch
    lr: float = bounded(1e-3, 0.0)
    lr_visual_mult: float = bounded(1.0, 0.0)  # paper 0.01 over 10k steps; here 300 steps
    lr_prompt_mult: float = bounded(10.0, 0.0)
    weight_decay: float = bounded(1e-4, 0.0)
    warmup_steps: int = bounded(0, 0)
    # image tower frozen this long: prompts settle on clusters first
    visual_delay_steps: int = bounded(50, 0)
    end_lr_factor: float = bounded(0.0, 0.0, 1.0)
    grad_clip: float = bounded(0.01, 0.0)
    # 96² steps cost 2x those at 64²: half the batch fits the budget
    batch_size: int = bounded(16, 1)
    grad_accum: int = bounded(1, 1)
    steps: int = bounded(300, 1)
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
    shuffle_buffer: int = bounded(256, 0)
    num_workers: int = bounded(0, 0)
    device: str = device_field()
    amp: str = choice("bf16", ("bf16", "fp16", "none"))  # GPU only
    checkpoint_every: int = bounded(100, 1)
    log_every: int = bounded(10, 1)
    live: str = "metrics/train"  # dvclive curves for DVC's plots and experiments; "" = off
    resume: str = ""  # "" | latest | a checkpoint path
    overwrite: bool = False  # a fresh run may replace the run already in ``out``
    seed: int = 0  # the data stream (order, crops, augmentation)
    init_seed: int = bounded(0, 0)  # prompt words and head weights; official: 0 whatever the seed


@dataclass(frozen=True)
class TrainOfficialParams:
    """The ``train`` recipe run again through the official last block, for the options row that
    scores it (``cli.py train --official``): these keys replace train's, the rest is train's."""

    out: str = "data/models/pixelclip_official"
    dense_mode: str = choice("pixelclip", DENSE_MODES)
    # through the official block the tiny CLIP's teacher clusters masks as a ~30 mIoU model
    # and the run gains ~3 mIoU; clustering through maskclip's, ~25 (RESULTS.md)
    teacher_dense_mode: str = choice("maskclip", ("", *DENSE_MODES))


@dataclass(frozen=True)
class BenchmarkRoots:
    """Roots of the real benchmarks in detectron2/CAT-Seg layout; empty = skipped."""

    coco_stuff: str = ""
    ade20k_150: str = ""
    pascal_context_59: str = ""
    cityscapes: str = ""
    voc20: str = ""


# Inference protocols: pixelclip (the paper's: the whole image squashed to resolution², 8
# templates, features at feature_size²), and the training-free peers' as their configs set
# them per benchmark (evaluate.inference.PEER_PROTOCOLS): sclip (short side 336, 448 on
# COCO-Stuff, 560 on Cityscapes; 224² windows at stride 112), naclip (336, 560 on Cityscapes;
# the same windows, VOC-20 whole), clearclip (448; 448² windows at stride 224, 224² on
# Cityscapes); all resized as mmcv does, long side at most 2048, 80 templates, the peers'
# class names.
PROTOCOLS = ("pixelclip", "sclip", "naclip", "clearclip")
# where mask-guided inference takes its masks: the masks stage's generators
MASK_SOURCES = ("sa1b", "sam", "sam2", "dino", "superpixel")


@dataclass(frozen=True)
class EvalOption:
    """One row of the options table: a named set of inference settings ("" = the default)."""

    name: str
    dense_mode: str = choice("", ("", *DENSE_MODES))
    protocol: str = choice("", ("", *PROTOCOLS))
    masks: str = choice("", ("", *MASK_SOURCES))  # "" = no masks
    pamr: bool = False
    # the fine-tuned model this row scores, e.g. one trained in its dense mode; "" = the stage's
    checkpoint: str = ""


@dataclass(frozen=True)
class EvaluateParams:
    """Baseline (untuned CLIP) and checkpoint scored side by side (docs/method.md)."""

    checkpoint: str = "data/models/pixelclip/final.pt"  # "" = score the baseline alone
    baseline: str = "data/models/tinyclip/final.pt"  # the untuned CLIP: tag, path, "" = random
    clip_model: str = "TinyCLIP-ViT-8"
    # detectron2's test mapper before anything else (PIL bilinear): short side to resize_short,
    # long side at most resize_max (0 = no limit); 0 = none. The official code: 640, 2560.
    resize_short: int = bounded(0, 0)
    resize_max: int = bounded(0, 0)
    # whole image squashed to resolution², or the sliding-window side
    resolution: int = bounded(96, 8)
    # that resize with an antialiasing filter; False = plain bilinear, as the official model
    antialias: bool = True
    # dense features upsampled to this grid before the text similarity
    feature_size: int = bounded(64, 1)
    dense_mode: str = choice("maskclip", DENSE_MODES)  # the last block's dense path
    protocol: str = choice("pixelclip", PROTOCOLS)
    masks: str = choice("", ("", *MASK_SOURCES))  # mask-guided inference: "" = off
    pamr: bool = False  # PAMR refinement of the logits
    pamr_steps: int = bounded(10, 1)
    pamr_dilations: tuple[int, ...] = bounded((8, 16), 1)
    mask_cache: str = "data/eval_masks"  # the masks stage's shards of the evaluation images
    options: tuple[EvalOption, ...] = (  # more rows of the results table
        EvalOption("official-dense", dense_mode="pixelclip",
                   checkpoint="data/models/pixelclip_official/final.pt"),
        EvalOption("sclip-dense", dense_mode="sclip"),
        EvalOption("region-masks", masks="sa1b"),
        EvalOption("superpixel-masks", masks="superpixel"))
    synthetic: str = "data/synthetic"
    roots: BenchmarkRoots = field(default_factory=BenchmarkRoots)
    max_images: int = bounded(0, 0)  # per benchmark, 0 = all
    sliding_window: bool = False
    window_stride: int = bounded(0, 0)  # 0 = resolution * 2 / 3
    # sliding: image short side before windowing, 0 = resolution
    slide_short_side: int = bounded(0, 0)
    batch_size: int = bounded(8, 1)
    device: str = device_field()
    metrics: str = "metrics/eval.json"
    per_class: str = "metrics/per_class.json"
    per_class_plots: str = "metrics/per_class"  # a CSV per benchmark and model: dvc plots
    # label PNGs: <bench>/<model>/, option rows under <bench>/options/<name>/<model>/; "" = none
    predictions: str = ""
    plots: str = "plots"
    num_plot_images: int = bounded(6, 0)
    # draws of the paired bootstrap over the images behind gain_interval_95; 0 = no interval
    bootstrap_draws: int = bounded(1000, 0)


@dataclass(frozen=True)
class Params:
    seed: int = 0
    synth: SynthParams = field(default_factory=SynthParams)
    masks: MasksParams = field(default_factory=MasksParams)
    pretrain: PretrainParams = field(default_factory=PretrainParams)
    train: TrainParams = field(default_factory=TrainParams)
    train_official: TrainOfficialParams = field(default_factory=TrainOfficialParams)
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


def check_fields(params: Any, where: str) -> None:
    """Check a section built in code (not loaded) against its fields' ``choice``/``bounded``
    metadata, as loading does; ConfigError naming ``where.<key>``."""
    for fld in dataclasses.fields(params):
        _checked(fld, getattr(params, fld.name), _join(where, fld.name))


def _checked(fld: dataclasses.Field, value: Any, where: str) -> Any:
    """``value`` if it satisfies the field's ``choice``/``bounded`` metadata, else ConfigError."""
    options = fld.metadata.get("choices")
    if options is not None and value not in options:
        raise ConfigError(f"'{where}' must be one of {', '.join(options)}, got {value!r}")
    pattern = fld.metadata.get("pattern")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise ConfigError(f"'{where}' must be auto, cpu, cuda or cuda:N, got {value!r}")
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
    raw = _read_params(path)
    try:
        return apply_overrides(from_dict(Params, raw), overrides or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _read_params(path: Path, depth: int = 0) -> dict:
    """A params file as a mapping; ``base: FILE`` (beside it) supplies the keys it omits."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a params file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the params file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections")
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str) or depth > 4:
        raise ConfigError(f"{path}: 'base' must name one params file (at most 5 deep)")
    return _merged(_read_params(path.parent / base, depth + 1), raw)


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = _merged(base[key], value) if both else value
    return out


def apply_overrides(obj: Any, overrides: dict[str, Any]) -> Any:
    """Return a copy of a dataclass tree with ``{"a.b.c": value}`` overrides applied."""
    for dotted, value in overrides.items():
        obj = _replace_path(obj, dotted.split("."), value, dotted)
    return obj


def _replace_path(obj: Any, keys: list[str], value: Any, dotted: str) -> Any:
    if not dataclasses.is_dataclass(obj):
        raise ConfigError(f"unknown key '{dotted}': its parent is a value, not a section")
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
        try:
            out[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            raise ConfigError(f"--set {key.strip()}: '{value}' is not a valid YAML value") from None
    return out


def stage_params(params_path: str | Path, section: str, sets: tuple[str, ...],
                 flags: dict[str, Any]) -> Any:
    """One stage's params: ``params.yaml`` ← ``--set`` overrides ← the command's own flags.

    ``flags`` maps keys of ``section`` to CLI values; ``None`` means "not given".
    """
    return getattr(all_params(params_path, section, sets, flags), section)


def all_params(params_path: str | Path, section: str, sets: tuple[str, ...],
               flags: dict[str, Any]) -> Params:
    """Every section, with ``--set`` overrides and ``section``'s flags applied."""
    overrides = parse_sets(sets)
    overrides.update({f"{section}.{k}": v for k, v in flags.items() if v is not None})
    return load_params(params_path, overrides)
