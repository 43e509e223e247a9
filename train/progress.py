"""Progress bar, the run's own JSONL log (it travels with the run folder), and the dvclive
curves DVC shows (``dvc plots show``, ``dvc exp show``): loss, learning rates, cluster usage,
throughput."""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm


class LogWriter:
    """Appends one JSON line per logged step; on resume, drops lines at or after ``start``."""

    def __init__(self, path: Path, start: int, enabled: bool = True) -> None:
        self.fh = None
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if start > 0 and path.is_file():
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] < start]
        path.write_text("".join(line + "\n" for line in kept))
        self.fh = open(path, "a")  # noqa: SIM115 - closed by close()

    def write(self, record: dict) -> None:
        if self.fh:
            self.fh.write(json.dumps(record) + "\n")
            self.fh.flush()

    def close(self) -> None:
        if self.fh:
            self.fh.close()


class Bar:
    """A tqdm bar showing loss, prompts in use and images/s (silent off rank 0)."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.bar = tqdm(total=total, initial=start, desc="train", unit="step",
                        disable=not enabled, dynamic_ncols=True)

    def update(self, metrics: dict, rate: float) -> None:
        self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", used=metrics["used"],
                             img_s=f"{rate:.1f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def progress_bar(total: int, start: int, enabled: bool = True) -> Bar:
    return Bar(total, start, enabled)


class LiveCurves:
    """dvclive logging into ``folder`` (``train.live``; "" = off), resumable: on resume the
    points from ``start`` on are dropped first, as the run logs them again."""

    CURVES = ("loss", "lr_visual", "lr_prompts", "lr_head", "used", "max_share", "grad_norm",
              "images_per_s")

    def __init__(self, folder: str, start: int, enabled: bool = True) -> None:
        self.live = None
        if not folder or not enabled:
            return
        from dvclive import Live

        if start > 0:
            _drop_from(Path(folder), start)
        self.live = Live(dir=folder, resume=start > 0, save_dvc_exp=False, dvcyaml=False)

    def write(self, record: dict) -> None:
        if self.live is None:
            return
        self.live.step = record["step"]
        for name in self.CURVES:
            if name in record:
                self.live.log_metric(f"train/{name}", record[name])
        self.live.next_step()

    def close(self) -> None:
        if self.live is not None:
            self.live.end()


def _drop_from(folder: Path, start: int) -> None:
    """Remove the rows of step ``start`` and later from dvclive's TSV curves."""
    for tsv in (folder / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        column = lines[0].split("\t").index("step") if lines else 0
        kept = lines[:1] + [row for row in lines[1:] if int(row.split("\t")[column]) < start]
        tsv.write_text("".join(f"{row}\n" for row in kept))
