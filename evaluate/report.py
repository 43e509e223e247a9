"""Figures a person looks at: overlay grids, per-class IoU bars, learned-prompt neighbours.

Every function takes arrays and a path and writes one PNG (matplotlib, Agg backend).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.colors

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

IGNORE = 255
MAX_LEGEND = 40


def colours_for(num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` uint8 colours, distinct hues first: the nine strong ``tab20``
    colours, their nine light partners (greys left out: they vanish on the grey overlay), then
    golden-ratio hues at alternating brightness."""
    tab = np.delete(np.array(matplotlib.colormaps["tab20"].colors), [14, 15], axis=0)
    base = np.concatenate([tab[0::2], tab[1::2]])
    if num_classes <= len(base):
        return (base[:num_classes] * 255).astype(np.uint8)
    i = np.arange(num_classes - len(base))
    hsv = np.stack([(i * 0.618034) % 1.0, 0.55 + 0.35 * (i % 2), 0.95 - 0.3 * (i // 2 % 2)], 1)
    extra = matplotlib.colors.hsv_to_rgb(hsv)
    return (np.concatenate([base, extra]) * 255).astype(np.uint8)


def overlay(image: np.ndarray, label: np.ndarray, colours: np.ndarray,
            alpha: float = 0.65, ignore_index: int = IGNORE) -> np.ndarray:
    """Class colours blended over the image's grey levels (so hues match the legend); ignored
    pixels are shown as the grey image, dimmed."""
    grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    out = np.repeat(grey[..., None], 3, axis=2)
    valid = label != ignore_index
    ids = np.where(valid, label, 0).astype(np.int64)
    out[valid] = (1 - alpha) * out[valid] + alpha * colours[ids[valid]]
    out[~valid] = 0.5 * out[~valid] + 0.5 * 128
    return np.clip(out, 0, 255).astype(np.uint8)


def legend_handles(labels: Sequence[np.ndarray], class_names: Sequence[str],
                   colours: np.ndarray, limit: int = MAX_LEGEND) -> list[Patch]:
    """Legend patches for the classes that cover most pixels in ``labels`` (at most ``limit``)."""
    counts = np.zeros(len(class_names), np.int64)
    for lab in labels:
        ids = lab[lab != IGNORE].astype(np.int64)
        counts += np.bincount(ids, minlength=len(class_names))[: len(class_names)]
    order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0][:limit]
    return [Patch(color=colours[i] / 255.0, label=class_names[i]) for i in order]


def comparison_grid(path: str | Path, title: str, images: Sequence[np.ndarray],
                    truths: Sequence[np.ndarray], preds: Mapping[str, Sequence[np.ndarray]],
                    class_names: Sequence[str]) -> Path:
    """Rows of image | ground truth | one overlay per model, with a class legend below."""
    colours = colours_for(len(class_names))
    columns = ["image", "ground truth", *preds]
    rows = len(images)
    shown = [*truths, *(p for ps in preds.values() for p in ps)]
    handles = legend_handles(shown, class_names, colours)
    legend_inches = 0.25 + 0.2 * ((len(handles) + 5) // 6)
    height = 2.4 * rows + 0.5 + legend_inches
    fig, axes = plt.subplots(rows, len(columns), squeeze=False,
                             figsize=(max(2.4 * len(columns), 7.5), height))
    for r in range(rows):
        panels = [images[r], overlay(images[r], truths[r], colours)]
        panels += [overlay(images[r], p[r], colours) for p in preds.values()]
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=10)
    fig.legend(handles=handles, loc="lower center", ncol=min(6, max(1, len(handles))),
               fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, legend_inches / height, 1, 1 - 0.35 / height))
    return _save(fig, path)


def per_class_bars(path: str | Path, title: str, class_names: Sequence[str],
                   ious: Mapping[str, Sequence[float | None]]) -> Path:
    """Horizontal bars of per-class IoU (%), one bar per model; absent classes marked n/a."""
    n, models = len(class_names), list(ious)
    height = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.22 * n * max(1, len(models)) ** 0.5))
    y = np.arange(n)
    for m, model in enumerate(models):
        values = np.array([np.nan if v is None else v for v in ious[model]], np.float64)
        ax.barh(y + (m - (len(models) - 1) / 2) * height, np.nan_to_num(values), height,
                label=model)
    for i in range(n):
        if all(ious[m][i] is None for m in models):
            ax.text(1, i, "n/a (absent)", va="center", fontsize=7, color="grey")
    ax.set_yticks(y, class_names, fontsize=8)
    ax.set_ylim(n - 0.5, -0.5)  # first class on top
    ax.set_xlim(0, 100)
    ax.set_xlabel("IoU (%)")
    ax.tick_params(axis="x", top=True, labeltop=n > 30)
    ax.set_title(title, fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def prompt_neighbours(path: str | Path, title: str, prompt_features: np.ndarray,
                      class_features: np.ndarray, class_names: Sequence[str],
                      top: int = 3) -> Path:
    """Each learned class prompt with its ``top`` nearest class names (cosine similarity),
    beside a heatmap of prompt × class similarity (prompts ordered by nearest class)."""
    sim = prompt_features @ class_features.T  # both L2-normalised
    nearest = np.argsort(-sim, axis=1)[:, :top]
    order = np.lexsort((-sim.max(1), nearest[:, 0]))
    colours = colours_for(len(class_names))
    k = len(order)
    per_col = 32
    text_cols = (k + per_col - 1) // per_col
    fig = plt.figure(figsize=(4.0 + 4.2 * text_cols, 1.5 + 0.2 * min(k, per_col)))
    grid = fig.add_gridspec(1, 1 + text_cols, width_ratios=[1.6] + [1.8] * text_cols)
    ax = fig.add_subplot(grid[0, 0])
    image = ax.imshow(sim[order], aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xlabel("class")
    ax.set_ylabel("learned prompt (sorted)")
    if len(class_names) <= 40:
        ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=7)
    fig.colorbar(image, ax=ax, fraction=0.05, label="cosine similarity")
    for col in range(text_cols):
        tax = fig.add_subplot(grid[0, 1 + col])
        tax.axis("off")
        chunk = order[col * per_col:(col + 1) * per_col]
        for row, p in enumerate(chunk):
            names = ", ".join(f"{class_names[c]} {sim[p, c]:.2f}" for c in nearest[p])
            tax.text(0.0, 1 - (row + 0.5) / per_col, f"#{p:<3d} {names}", fontsize=7,
                     family="monospace", va="center", transform=tax.transAxes,
                     color=colours[nearest[p, 0]] / 255.0 * 0.7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def summary_bars(path: str | Path, miou: Mapping[str, Mapping[str, float | None]]) -> Path:
    """mIoU per benchmark (x) and model (bars): ``{benchmark: {model: miou}}``."""
    benches = list(miou)
    models = list(dict.fromkeys(m for v in miou.values() for m in v))
    width = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(benches), 3.6))
    x = np.arange(len(benches))
    for m, model in enumerate(models):
        values = [miou[b].get(model) or 0.0 for b in benches]
        bars = ax.bar(x + (m - (len(models) - 1) / 2) * width, values, width, label=model)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(x, benches, fontsize=8)
    ax.set_ylabel("mIoU (%)")
    ax.set_title("mIoU per benchmark")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def labelled_overlay(path: str | Path, title: str, image: np.ndarray, label: np.ndarray,
                     class_names: Sequence[str]) -> Path:
    """Image beside its predicted-label overlay, with a legend of the classes found."""
    colours = colours_for(len(class_names))
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.6))
    for ax, panel, name in zip(axes, (image, overlay(image, label, colours)),
                               ("image", "prediction"), strict=True):
        ax.imshow(panel, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    handles = legend_handles([label], class_names, colours)
    fig.legend(handles=handles, loc="lower center", ncol=min(6, max(1, len(handles))),
               fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    return _save(fig, path)
