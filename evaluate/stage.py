"""The ``evaluate`` stage: baseline (untuned CLIP) and checkpoint scored side by side.

Per benchmark (the synthetic one always, the real ones whose root is set and exists): text
classifier from the class names, predictions of every model for each batch of images, one
confusion matrix per model → ``metrics.json`` (mIoU, pixel accuracy, gain), per-class IoU in
a second JSON with the resolved config, and figures under ``plots/<benchmark>/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from config import ConfigError, EvaluateParams, MasksParams, resolve_device, to_dict
from evaluate import report
from evaluate.benchmarks import Benchmark, BenchmarkError, discover, load_pair
from evaluate.eval_masks import benchmark_masks, decode_for
from evaluate.inference import (
    InferenceOptions,
    check_resolution,
    classifier,
    options_for,
    predict,
    text_classifier,
)
from evaluate.labels import write_label
from evaluate.metrics import class_counts, confusion_matrix, paired_bootstrap, summarize
from files import load_tensors, write_json, write_text
from models.clip import CLIPBundle, load_clip

log = logging.getLogger(__name__)
PROMPTS_FILE = "prompts.pt"
MODELS = ("baseline", "checkpoint")  # the models of every row, as eval.json names them


@dataclass(frozen=True)
class Row:
    """One row of the results table: a name ('' = the default settings), how images become
    logits, where its masks come from ('' = none), the checkpoint it scores beside the baseline
    ('' = none), and its settings as eval.json shows them."""

    name: str
    options: InferenceOptions
    masks: str
    checkpoint: str
    settings: dict


@dataclass
class BenchResult:
    """Confusion matrices per model (default row) and per option row and model, each scored
    image's class counts per row ('' = default) and model, seconds of inference per row, and
    the first few samples kept for the overlay grid."""

    matrices: dict[str, np.ndarray]
    rows: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    counts: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # one line per image that was left out
    images: list[np.ndarray] = field(default_factory=list)
    truths: list[np.ndarray] = field(default_factory=list)
    preds: dict[str, list[np.ndarray]] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalSummary:
    """What ``run`` wrote: headline numbers per benchmark and the skipped benchmarks."""

    metrics: str
    results: dict
    skipped: tuple[str, ...]

    def lines(self) -> list[str]:
        """One line per benchmark: mIoU of every model and the gain."""
        out = []
        for name, res in self.results.items():
            parts = [f"{m} {res[m]['miou']:.2f}" for m in MODELS if m in res]
            gain = ""
            if "gain_miou" in res:
                interval = res.get("gain_interval_95")
                within = ", 95% interval {:+.2f} to {:+.2f}".format(*interval) if interval else ""
                gain = f" (gain {res['gain_miou']:+.2f}{within})"
            left = f", {res['skipped_images']} skipped" if res.get("skipped_images") else ""
            out.append(f"{name}: mIoU {' / '.join(parts)}{gain} on {res['images']} images"
                       f"{left} ({res['miou_convention']} mIoU)")
        return out


def run(cfg: EvaluateParams, masks: MasksParams | None = None) -> EvalSummary:
    """Score the baseline and (when ``cfg.checkpoint`` is set) the checkpoint on every benchmark,
    under the default settings and every option row; write ``cfg.metrics``, ``cfg.per_class``
    and the figures under ``cfg.plots``. ``masks`` holds the generators' settings for
    mask-guided rows (params.yaml's ``masks`` section)."""
    device = resolve_device(cfg.device, "evaluate.device")
    names = [o.name for o in cfg.options]
    if len(set(names)) != len(names) or "" in names:
        raise ConfigError("evaluate.options: every option needs a name of its own")
    for name in names:  # a folder name under evaluate.predictions
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ConfigError(f"evaluate.options: name {name!r} must be letters, digits, "
                              "'.', '_' or '-'")
    benchmarks, skipped = discover(cfg)
    for line in skipped:
        log.info(line)
    models = load_models(cfg, device)
    for bench in benchmarks:
        for row in table_rows(cfg, bench.name):
            for bundle in models.of(row).values():
                check_resolution(bundle, row.options)
    prompts = load_prompt_features(cfg.checkpoint)
    results, per_class = {}, {"config": to_dict(cfg)}
    for bench in benchmarks:
        outcome = evaluate_benchmark(bench, models, device, cfg, masks or MasksParams())
        summaries = {m: summarize(cm, bench.classes, bench.miou)
                     for m, cm in outcome.matrices.items()}
        scored = len(bench.pairs) - len(outcome.skipped)
        results[bench.name] = headline(summaries, scored, outcome.counts[""], cfg.bootstrap_draws,
                                       bench.miou)
        results[bench.name].update(miou_convention=bench.miou,
                                   skipped_images=len(outcome.skipped))
        if cfg.options:
            rows = {r.name: r for r in table_rows(cfg, bench.name)}
            results[bench.name]["options"] = {
                name: {**rows[name].settings,
                       **trained_modes(rows[name].checkpoint),
                       **headline({m: summarize(cm, bench.classes, bench.miou)
                                   for m, cm in matrices.items()}, scored,
                                  outcome.counts[name], cfg.bootstrap_draws, bench.miou),
                       "seconds_per_image": round(outcome.seconds[name] / max(1, scored), 4)}
                for name, matrices in outcome.rows.items()}
        per_class[bench.name] = {m: s["per_class"] for m, s in summaries.items()}
        for m, summary in summaries.items():  # bar charts for dvc plots (diff between runs)
            rows = [f"{name},{iou}" for name, iou in summary["per_class"].items()
                    if iou is not None]
            write_text(Path(cfg.per_class_plots) / f"{bench.name}-{m}.csv",
                       "class,iou\n" + "".join(f"{row}\n" for row in rows))
        write_figures(Path(cfg.plots) / bench.name, bench, outcome, summaries)
        if prompts is not None:
            tuned = models.checkpoints[cfg.checkpoint]
            class_feats = text_classifier(tuned, bench.classes).cpu().numpy()
            report.prompt_neighbours(
                Path(cfg.plots) / bench.name / "prompts.png",
                f"{bench.name}: learned class prompts → nearest class names",
                prompts, class_feats, bench.classes)
    report.summary_bars(Path(cfg.plots) / "summary.png",
                        {b: {m: r[m]["miou"] for m in MODELS if m in r}
                         for b, r in results.items()})
    write_json(cfg.metrics, results)
    write_json(cfg.per_class, per_class)
    return EvalSummary(cfg.metrics, results, tuple(skipped))


def table_rows(cfg: EvaluateParams, benchmark: str) -> list[Row]:
    """The default row (name '') and one per ``cfg.options`` entry, resolved for ``benchmark``."""
    rows = [Row("", options_for(cfg, None, benchmark), cfg.masks, cfg.checkpoint, {})]
    for option in cfg.options:
        checkpoint = option.checkpoint or cfg.checkpoint
        settings = {"dense_mode": option.dense_mode or cfg.dense_mode,
                    "protocol": option.protocol or cfg.protocol,
                    "masks": option.masks, "pamr": option.pamr, "checkpoint_path": checkpoint}
        rows.append(Row(option.name, options_for(cfg, option, benchmark), option.masks,
                        checkpoint, settings))
    return rows


def trained_modes(checkpoint: str) -> dict[str, str | None]:
    """The last blocks the run that wrote ``checkpoint`` trained through (its ``params.json``):
    ``train.dense_mode`` and the teacher's (``teacher_dense_mode``, "" meaning the same), both
    None for a checkpoint that this project's trainer did not write."""
    path = Path(checkpoint).parent / "params.json"
    mode = teacher = None
    if checkpoint and path.is_file():
        try:
            params = json.loads(path.read_text())
            mode, teacher = params.get("dense_mode"), params.get("teacher_dense_mode") or None
        except (OSError, ValueError, AttributeError):
            pass
    if not isinstance(mode, str):
        mode = teacher = None
    return {"trained_dense_mode": mode,
            "trained_teacher_dense_mode": teacher if isinstance(teacher, str) else mode}


@dataclass(frozen=True)
class Models:
    """The baseline and every checkpoint a row scores, by path, each loaded once."""

    baseline: CLIPBundle
    checkpoints: dict[str, CLIPBundle]

    def of(self, row: Row) -> dict[str, CLIPBundle]:
        """The models ``row`` scores, by their names in eval.json."""
        named = {"baseline": self.baseline}
        if row.checkpoint:
            named["checkpoint"] = self.checkpoints[row.checkpoint]
        return named


def load_models(cfg: EvaluateParams, device: torch.device) -> Models:
    """The baseline, ``evaluate.checkpoint`` (when set) and the options' own checkpoints."""
    keys = {cfg.checkpoint: "evaluate.checkpoint"}
    keys.update({o.checkpoint: f"evaluate.options.{o.name}.checkpoint"
                 for o in cfg.options if o.checkpoint and o.checkpoint not in keys})
    return Models(load_clip(cfg.clip_model, cfg.baseline, device, key="evaluate.baseline"),
                  {path: load_clip(cfg.clip_model, path, device, key=key)
                   for path, key in keys.items() if path})


def load_prompt_features(checkpoint: str) -> np.ndarray | None:
    """The learned prompts' ``(k, D)`` text features saved beside the checkpoint, if any."""
    if not checkpoint:
        return None
    path = Path(checkpoint).parent / PROMPTS_FILE
    if not path.is_file():
        return None
    saved = load_tensors(path, "evaluate.checkpoint")
    feats = saved["text_features"].float()
    return torch.nn.functional.normalize(feats, dim=-1).numpy()


def evaluate_benchmark(bench: Benchmark, models: Models, device: torch.device,
                       cfg: EvaluateParams, masks: MasksParams) -> BenchResult:
    """Every model's confusion matrix on ``bench`` under every row of the table (each image is
    read once for all of them)."""
    n = len(bench.classes)
    rows = table_rows(cfg, bench.name)
    texts: dict[tuple, torch.Tensor] = {}
    for r in rows:  # one text classifier per model, template set and class names
        for b in models.of(r).values():
            key = id(b), r.options.templates, r.options.class_names
            if key not in texts:
                texts[key] = classifier(b, r.options, bench.classes).to(device)
    found = {g: benchmark_masks(cfg.mask_cache, bench, dataclasses.replace(masks, generator=g))
             for g in sorted({r.masks for r in rows} - {""})}
    zeros = {r.name: {m: np.zeros((n, n), np.int64) for m in models.of(r)} for r in rows}
    result = BenchResult(zeros.pop(""), rows=zeros, seconds={r.name: 0.0 for r in rows},
                         counts={r.name: {m: [] for m in models.of(r)} for r in rows},
                         preds={m: [] for m in models.of(rows[0])})
    batches = [bench.pairs[i:i + cfg.batch_size]
               for i in range(0, len(bench.pairs), cfg.batch_size)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        loading = prefetched(pool, lambda b: [_try_load(p, n) for p in b], batches)
        progress = tqdm(zip(batches, loading, strict=True), total=len(batches), unit="batch",
                        desc=bench.name, disable=None)
        for pairs, loaded in progress:
            for problem in (x for x in loaded if isinstance(x, str)):
                log.warning("%s: skipped an image: %s", bench.name, problem)
                result.skipped.append(problem)
            pairs = [p for p, x in zip(pairs, loaded, strict=True) if not isinstance(x, str)]
            loaded = [x for x in loaded if not isinstance(x, str)]
            if not loaded:
                continue
            images = [image for image, _ in loaded]
            truths = [label for _, label in loaded]
            keep = max(0, min(len(images), cfg.num_plot_images - len(result.images)))
            result.images += images[:keep]
            result.truths += truths[:keep]
            for row in rows:
                image_masks = ([decode_for(found[row.masks].get(p.key), img.shape[:2])
                                for p, img in zip(pairs, images, strict=True)]
                               if row.masks else None)
                for m, bundle in models.of(row).items():
                    start = time.perf_counter()
                    text = texts[id(bundle), row.options.templates, row.options.class_names]
                    preds = predict(bundle, text, images, row.options, device, image_masks)
                    result.seconds[row.name] += time.perf_counter() - start
                    target = result.rows[row.name][m] if row.name else result.matrices[m]
                    for pred, truth in zip(preds, truths, strict=True):
                        cm = confusion_matrix(pred, truth, n)
                        target += cm
                        result.counts[row.name][m].append(class_counts(cm))
                    if cfg.predictions:
                        folder = Path(cfg.predictions, bench.name,
                                      f"options/{row.name}" if row.name else "", m)
                        for pair, pred in zip(pairs, preds, strict=True):
                            write_label(folder / pair.key, pred)
                    if not row.name:
                        result.preds[m] += preds[:keep]
    return result


def _try_load(pair, num_classes: int) -> tuple[np.ndarray, np.ndarray] | str:
    """Image and label of a pair, or the one-line reason it cannot be scored."""
    try:
        return load_pair(pair, num_classes)
    except BenchmarkError as exc:
        return str(exc)


def prefetched(pool: ThreadPoolExecutor, fn: Callable, items: list, depth: int = 2) -> Iterator:
    """``fn(item)`` for each item, in order, computed ``depth`` items ahead on ``pool`` (bounded
    memory, unlike ``pool.map``, which submits everything at once)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > depth:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def headline(summaries: dict[str, dict], images: int, counts: dict[str, list[np.ndarray]],
             draws: int, convention: str) -> dict:
    """Per model ``{"miou", "pixel_acc"}``, the checkpoint's mIoU gain, with ``draws`` its 95%
    interval from a paired bootstrap over the images' ``counts``, the image count."""
    out: dict = {m: {"miou": s["miou"], "pixel_acc": s["pixel_acc"]} for m, s in summaries.items()}
    if "checkpoint" in summaries and None not in (summaries["checkpoint"]["miou"],
                                                   summaries["baseline"]["miou"]):
        out["gain_miou"] = round(summaries["checkpoint"]["miou"] - summaries["baseline"]["miou"], 4)
        if draws:
            out["gain_interval_95"] = paired_bootstrap(
                np.stack(counts["checkpoint"]), np.stack(counts["baseline"]), draws,
                convention=convention)["interval_95"]
    out["images"] = images
    return out


def write_figures(folder: Path, bench: Benchmark, outcome: BenchResult,
                  summaries: dict[str, dict]) -> None:
    """Overlay grid and per-class IoU bars of one benchmark."""
    titles = {m: f"{m} ({s['miou']:.1f} mIoU)" if s["miou"] is not None else m
              for m, s in summaries.items()}
    if outcome.images:
        report.comparison_grid(
            folder / "overlays.png", f"{bench.name}: image / ground truth / predictions",
            outcome.images, outcome.truths,
            {titles[m]: p for m, p in outcome.preds.items()}, bench.classes)
    report.per_class_bars(
        folder / "per_class_iou.png", f"{bench.name}: per-class IoU", bench.classes,
        {m: list(s["per_class"].values()) for m, s in summaries.items()})
