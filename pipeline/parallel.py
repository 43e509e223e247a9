"""Running one task per shard: in-process, on a dask LocalCluster, or on an existing cluster."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from config import MasksParams


def run_tasks(fn: Callable[..., dict], tasks: Sequence[Any], cfg: MasksParams) -> list[dict]:
    """Run ``fn(task, cfg)`` for every task with a progress bar; returns results as they finish.

    ``cfg.scheduler`` connects to an existing dask scheduler; ``cfg.workers > 1`` starts a
    ``LocalCluster`` of single-threaded worker processes; otherwise tasks run here, in order.
    """
    if not tasks:
        return []
    bar = tqdm(total=len(tasks), desc=f"masks ({cfg.generator})", unit="shard")
    try:
        if not cfg.scheduler and cfg.workers <= 1:
            results = []
            for task in tasks:
                results.append(fn(task, cfg))
                bar.update()
            return results
        return _run_dask(fn, tasks, cfg, bar)
    finally:
        bar.close()


def _run_dask(fn: Callable[..., dict], tasks: Sequence[Any], cfg: MasksParams, bar: tqdm) -> list:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if cfg.scheduler:
        client = Client(cfg.scheduler)
    else:
        cluster = LocalCluster(n_workers=cfg.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        futures = client.map(fn, tasks, cfg=cfg, pure=False)
        results = []
        for future in as_completed(futures):
            results.append(future.result())
            bar.update()
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
