"""Running one task per shard: in-process, on a dask LocalCluster, or on an existing cluster.

GPU placement: a ``LocalCluster`` worker ``i`` sees only GPU ``i mod n`` (``CUDA_VISIBLE_DEVICES``
is set in the worker before any CUDA call), so each worker's model lives on its own GPU. Workers
of an existing cluster (``--scheduler``) are placed by whoever started them (e.g. one
``dask worker`` per GPU with ``CUDA_VISIBLE_DEVICES`` set, or dask-cuda).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin
from tqdm import tqdm

from config import MasksParams

log = logging.getLogger(__name__)
TORCH_GENERATORS = ("sam", "sam2", "dino")


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


PROJECT = Path(__file__).resolve().parents[1]
SKIP_UPLOAD = (".git", ".venv", ".dvc", "data", "tests", "docs", "bench", "metrics", "plots",
               "__pycache__", ".pytest_cache", ".ruff_cache")


def _run_dask(fn: Callable[..., dict], tasks: Sequence[Any], cfg: MasksParams, bar: tqdm) -> list:
    from dask.distributed import Client, LocalCluster, as_completed
    from distributed.diagnostics.plugin import UploadDirectory

    cluster = None
    if cfg.scheduler:
        client = Client(cfg.scheduler)
        # workers of another machine need this code: ship it (not data, tests or the venv)
        client.register_plugin(UploadDirectory(str(PROJECT), update_path=True,
                                               skip_words=SKIP_UPLOAD), name="pixelclip-code")
    else:
        cluster = LocalCluster(n_workers=cfg.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        gpus = visible_gpus() if _wants_gpu(cfg) else []
        if len(gpus) > 1:
            client.register_plugin(PinGpu(gpus), name="pin-gpu")
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


class PinGpu(WorkerPlugin):
    """Dask worker plugin: worker ``i`` of a LocalCluster sees only GPU ``gpus[i % n]``."""

    def __init__(self, gpus: list[str]) -> None:
        self.gpus = gpus

    def setup(self, worker: Any) -> None:
        """Set ``CUDA_VISIBLE_DEVICES`` in the worker process (before any CUDA call)."""
        index = int(worker.name) if str(worker.name).isdigit() else hash(worker.name)
        os.environ["CUDA_VISIBLE_DEVICES"] = self.gpus[index % len(self.gpus)]

    def teardown(self, worker: Any) -> None:
        """Nothing to undo: the worker process ends with the cluster."""


def visible_gpus() -> list[str]:
    """IDs of the GPUs this process may use (``CUDA_VISIBLE_DEVICES`` order), or none."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        return []


def _wants_gpu(cfg: MasksParams) -> bool:
    return cfg.generator in TORCH_GENERATORS and cfg.device != "cpu"
