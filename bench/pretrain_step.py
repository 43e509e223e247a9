"""Tiny-CLIP pretraining step: training only the token-embedding rows the captions use
(``synthetic.pretrain.only_used_rows``, the stage's way) against the whole 49,408-row table.

Both variants take the same steps from the same weights, alternating in rounds so that a
change of the machine's speed hits both; the script prints ms per step and the ratio.

    python bench/pretrain_step.py            # the stage's step: batch 64 at 64²
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from config import PretrainParams, load_params  # noqa: E402


def parse(argv: list[str] | None, stage: PretrainParams) -> argparse.Namespace:
    """Options, defaulting to the stage's own model, batch and size."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=stage.model)
    p.add_argument("--batch-size", type=int, default=stage.batch_size)
    p.add_argument("--image-size", type=int, default=stage.image_size)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant and round")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import numpy as np
    import torch

    from models.clip import load_clip
    from synthetic.pretrain import make_optimizer, only_used_rows, train_step
    from synthetic.synth import caption
    from synthetic.world import NAMES

    cfg = load_params().pretrain  # the stage's settings, as params.yaml sets them
    args = parse(argv, cfg)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    bundle = load_clip(args.model)
    model = bundle.model.train()
    captions = [caption(rng, list(rng.choice(NAMES, 3, replace=False)))
                for _ in range(args.batch_size)]
    tokens = bundle.tokenizer(captions)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)

    def timed(steps: int) -> float:
        opt = make_optimizer(model, cfg)
        start = 0.0
        for i in range(steps + 1):  # the first step (optimiser state allocation) is untimed
            if i == 1:
                start = time.perf_counter()
            train_step(model, opt, images, tokens, cfg.patch_weight)
        return (time.perf_counter() - start) / steps * 1000

    full, rows = [], []
    for _ in range(args.rounds):
        full.append(timed(args.steps))
        with only_used_rows(model, tokens):
            rows.append(timed(args.steps))
    f, r = float(np.median(full)), float(np.median(rows))
    print(f"{args.model}, batch {args.batch_size} at {args.image_size}², "
          f"{len(torch.unique(tokens))} token rows used, {torch.get_num_threads()} threads")
    print(f"whole table   {f:7.1f} ms/step (median of {args.rounds} rounds)")
    print(f"used rows     {r:7.1f} ms/step")
    print(f"ratio         {f / r:.2f}x faster")


if __name__ == "__main__":
    main()
