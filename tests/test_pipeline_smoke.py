"""End to end: `dvc repro` of the real dvc.yaml on a copy of the repository, at tiny sizes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "synth": {"train": 24, "val": 6, "web": 96, "size": 64, "workers": 2},
    "pretrain": {"steps": 30, "batch_size": 16, "warmup_steps": 3},
    "masks": {"shard_size": 8},
    "train": {"steps": 30, "batch_size": 8, "num_prompts": 8, "visual_delay_steps": 5,
              "checkpoint_every": 30, "log_every": 1, "shuffle_buffer": 8},
    "evaluate": {"num_plot_images": 2},
}


def _tiny_repo(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file() and not name.startswith(("docs/", "dvc.lock", "metrics/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for stage, values in TINY.items():
        params[stage].update(values)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"],
                   cwd=dest, check=True)


def test_dvc_repro_runs_every_stage_and_training_lowers_the_loss(tmp_path):
    _tiny_repo(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-m", "dvc", "repro", "--quiet"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    assert (tmp_path / "dvc.lock").is_file()
    synthetic = json.loads((tmp_path / "metrics" / "eval.json").read_text())["synthetic"]
    assert synthetic["images"] == 6
    assert {"baseline", "checkpoint", "gain_miou"} <= set(synthetic)
    official = synthetic["options"]["official-dense"]  # scores the train_official stage's run
    assert official["checkpoint_path"] == "data/models/pixelclip_official/final.pt"
    assert (official["trained_dense_mode"], official["trained_teacher_dense_mode"]) == (
        "pixelclip", "maskclip")
    assert (tmp_path / "plots" / "synthetic" / "overlays.png").is_file()
    log = [json.loads(line) for line in
           (tmp_path / "data" / "models" / "pixelclip" / "log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in log]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5  # training lowers the loss
    # DVC's own tools see the training curves and the per-class bars
    shown = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    plots = json.loads(shown.stdout)["data"]
    loss = plots["metrics/train/plots/metrics/train/loss.tsv"][0]["content"]["data"]["values"]
    assert [float(p["loss"]) for p in loss] == pytest.approx(losses)
    assert {"lr_visual", "lr_prompts", "used", "images_per_s"} <= {
        k.rsplit("/", 1)[1].removesuffix(".tsv") for k in plots if "/train/" in k}
    bars = plots["metrics/per_class/synthetic-checkpoint.csv"][0]["content"]
    assert bars["mark"]["type"] == "bar" and bars["data"]["values"]
    metrics = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--json"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    shown = json.loads(metrics.stdout)[""]["data"]
    assert shown["metrics/train/metrics.json"]["data"]["train"]["loss"] == pytest.approx(
        losses[-1])
    assert "gain_miou" in shown["metrics/eval.json"]["data"]["synthetic"]
