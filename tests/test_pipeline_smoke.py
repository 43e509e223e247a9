"""End to end: `dvc repro` of the real dvc.yaml on a copy of the repository, at tiny sizes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
    assert (tmp_path / "plots" / "synthetic" / "overlays.png").is_file()
    log = [json.loads(line) for line in
           (tmp_path / "data" / "models" / "pixelclip" / "log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in log]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5  # training lowers the loss
