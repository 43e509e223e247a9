"""Scale-out and resume: dask with 2 workers equals 1 worker; a SIGKILLed run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from pipeline import masks
from pipeline.parallel import PinGpu
from shards import schema
from shards.manifest import read_table
from shards.writer import sha256_file
from tests.masks_testdata import masks_params, write_images

ROOT = Path(__file__).resolve().parents[1]

# Runs the masks stage in a child process with a generator that sleeps per image, so the
# test can kill it (SIGKILL) in the middle of a shard. The masks are the superpixel ones.
CHILD = """
import json, sys, time
from config import MasksParams, from_dict
from pipeline import generators
from pipeline.masks import run

def slow(cfg):
    inner = generators._build_superpixel(cfg)
    class Slow:
        info = inner.info
        def __call__(self, item, image):
            time.sleep(0.25)
            return inner(item, image)
    return Slow()

generators.BUILDERS["superpixel"] = slow
print(run(from_dict(MasksParams, json.loads(sys.argv[1]))).line(), flush=True)
"""


def shard_hashes(out: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(out.glob("*.tar"))}


def test_two_dask_workers_equal_one(tmp_path: Path) -> None:
    write_images(tmp_path / "in", 6)
    one = masks.run(masks_params(tmp_path / "in", tmp_path / "one"))
    two = masks.run(masks_params(tmp_path / "in", tmp_path / "two", workers=2))
    assert (one.written, one.shards) == (two.written, two.shards) == (6, 3)
    assert shard_hashes(tmp_path / "one") == shard_hashes(tmp_path / "two")
    assert read_table(tmp_path / "one" / schema.MANIFEST) == read_table(
        tmp_path / "two" / schema.MANIFEST)


def test_sigkill_mid_shard_then_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    write_images(tmp_path / "in", 8)
    reference = masks.run(masks_params(tmp_path / "in", tmp_path / "ref"))
    cfg = masks_params(tmp_path / "in", tmp_path / "out")
    raw = asdict(cfg)
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(raw)], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    def parts() -> list[Path]:  # a new output folder is built beside it until complete
        return list(tmp_path.glob(f".out.partial-*/{masks.PARTS}/train-*.json"))

    deadline = time.monotonic() + 60
    while not parts() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into the second shard (two images of 0.25 s each)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    finished = len(parts())
    assert 1 <= finished < reference.shards, "the kill did not land mid-run"
    assert not (tmp_path / "out").exists()

    resumed = masks.run(cfg)
    assert resumed.skipped_shards == finished and not parts()  # built, then renamed in place
    assert shard_hashes(tmp_path / "out") == shard_hashes(tmp_path / "ref")
    assert read_table(tmp_path / "out" / schema.MANIFEST) == read_table(
        tmp_path / "ref" / schema.MANIFEST)
    assert not list((tmp_path / "out").glob("*.staged")) + list((tmp_path / "out").glob("*.tmp"))


def test_pin_gpu_gives_each_worker_its_own_gpu(monkeypatch) -> None:
    plugin = PinGpu(["0", "1"])
    seen = []
    for name in (0, 1, 2):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
        plugin.setup(type("Worker", (), {"name": name})())
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["0", "1", "0"]


def test_an_existing_scheduler_gets_absolute_paths_and_the_code(tmp_path: Path,
                                                               monkeypatch) -> None:
    """Workers started elsewhere (another folder here) read the inputs the caller named with
    relative paths, and import the project from what the stage ships them."""
    from dask.distributed import LocalCluster

    write_images(tmp_path / "in", 4)
    local = masks.run(masks_params(tmp_path / "in", tmp_path / "local"))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        monkeypatch.chdir(tmp_path)  # the workers stay where they started
        remote = masks.run(masks_params(Path("in"), Path("remote"),
                                        scheduler=cluster.scheduler_address))
    assert (remote.written, remote.shards) == (local.written, local.shards) == (4, 2)
    assert shard_hashes(tmp_path / "remote") == shard_hashes(tmp_path / "local")
