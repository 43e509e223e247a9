"""Progress bar and the JSONL training log (losses and cluster usage, so collapse is visible)."""

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
