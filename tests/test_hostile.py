"""Hostile and careless use, through the CLI: every case ends in one line naming the key or
file (or is handled), never a traceback, a crafted file's code, or another run's outputs lost.

The README's reliability table counts these cases: ``pytest tests/test_hostile.py -v``.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cli import cli

TINY = ["--set", "train.clip_resolution=32", "--set", "train.mask_resolution=16",
        "--set", "train.num_prompts=4", "--set", "train.head_widths=[8,8,8]",
        "--set", "train.prompt_vocab=", "--set", "train.checkpoint_every=1",
        "--set", "train.live=", "--clip-pretrained", "", "--batch-size", "2"]


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result, *fragments: str) -> str:
    """The command failed with exactly one ``Error:`` line holding every fragment."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def run_dir(shard_dir, tmp_path_factory) -> Path:
    """A finished tiny run with checkpoints at steps 1 and 2."""
    out = tmp_path_factory.mktemp("run") / "pixelclip"
    result = invoke("train", "--shards", shard_dir, "--out", out, "--steps", 2, *TINY)
    assert result.exit_code == 0, result.output
    return out


class Payload:
    """Unpickling this calls ``Path.touch`` on a marker: code from a crafted file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# ---------------------------------------------------------------- checkpoints and run folders

# Random bytes on which torch.load's unpickler raises UnpicklingError, IndexError, KeyError
# and UnicodeDecodeError respectively.
GARBAGE_SEEDS = (0, 2, 20, 195)



def test_crafted_checkpoint_runs_no_code(run_dir, shard_dir, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    marker = tmp_path / "pwned"
    with open(out / "checkpoints" / "step_0000009.pt", "wb") as handle:
        pickle.dump({"model": Payload(marker)}, handle)
    for resume in ("latest", out / "checkpoints" / "step_0000009.pt"):
        result = invoke("train", "--shards", shard_dir, "--out", out, "--steps", 2,
                        "--resume", resume, *TINY)
        if resume == "latest":  # the previous checkpoint is used, and it says so
            assert result.exit_code == 0, result.output
        else:
            one_line_error(result, "train.resume", "step_0000009.pt is not a readable")
    assert not marker.exists()
    for seed in GARBAGE_SEEDS:
        garbage = tmp_path / f"garbage{seed}.pt"
        garbage.write_bytes(random.Random(seed).randbytes(256))
        one_line_error(invoke("train", "--shards", shard_dir, "--out", out, "--steps", 2,
                              "--resume", garbage, *TINY), "train.resume", "is not a readable")


def test_resume_of_another_configuration_is_refused_naming_the_keys(run_dir, shard_dir):
    result = invoke("train", "--shards", shard_dir, "--out", run_dir, "--steps", 2,
                    "--resume", "latest", *TINY, "--set", "train.num_prompts=5")
    one_line_error(result, "other settings", "num_prompts (4 → 5)")


def test_fresh_run_into_a_run_folder_is_refused_and_overwrite_replaces_it(run_dir, shard_dir,
                                                                          tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    log = (out / "log.jsonl").read_bytes()
    one_line_error(invoke("train", "--shards", shard_dir, "--out", out, "--steps", 2, *TINY),
                   "train.out", "holds another run", "--overwrite")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(invoke("train", "--shards", empty, "--out", out, *TINY), "train.shards")
    assert (out / "log.jsonl").read_bytes() == log
    result = invoke("train", "--shards", shard_dir, "--out", out, "--steps", 1, "--overwrite",
                    *TINY)
    assert result.exit_code == 0, result.output
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [0] and [p.name for p in (out / "checkpoints").iterdir()] == [
        "step_0000001.pt"]


@pytest.mark.parametrize("command", ["evaluate", "segment", "ceiling"])
def test_training_checkpoint_or_garbage_given_as_a_model(run_dir, tmp_path, synth_root,
                                                         command):
    garbage = []
    for seed in GARBAGE_SEEDS:
        garbage.append(tmp_path / f"garbage{seed}.pt")
        garbage[-1].write_bytes(random.Random(seed).randbytes(256))
    for bad in (*garbage, run_dir / "checkpoints" / "step_0000002.pt"):
        args = {"evaluate": ["evaluate", "--checkpoint", bad, "--baseline", "",
                             "--set", f"evaluate.synthetic={synth_root}"],
                "segment": ["segment", synth_root / "val/images/sa_000000.png", "--classes",
                            "sky,grass", "--checkpoint", bad, "--out", tmp_path / "seg"],
                "ceiling": ["ceiling", "--checkpoint", bad,
                            "--set", f"evaluate.synthetic={synth_root}"]}[command]
        one_line_error(invoke(*args), str(bad.name), "is not an open_clip")


# ---------------------------------------------------------------- output folders


def test_synth_into_a_used_folder_is_refused_and_overwrite_leaves_nothing_stale(tmp_path):
    out = tmp_path / "world"
    args = ["synth", "--out", out, "--train", 2, "--val", 1, "--web", 0, "--size", 32]
    assert invoke(*args).exit_code == 0
    (out / "train" / "images" / "stale.png").write_bytes(b"old")
    one_line_error(invoke(*args), "synth.out", "--overwrite")
    assert invoke(*args, "--overwrite").exit_code == 0
    assert not (out / "train" / "images" / "stale.png").exists()


def test_segment_two_images_of_one_name_writes_both(tmp_path, synth_root):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(synth_root / "val/images" / f"sa_00000{sub == 'b':d}.png",
                    tmp_path / sub / "x.png")
    result = invoke("segment", tmp_path / "a/x.png", tmp_path / "b/x.png", "--classes",
                    "sky,grass", "--checkpoint", "", "--out", tmp_path / "seg",
                    "--resolution", 32)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "seg").iterdir()) == [
        "a__x_label.png", "a__x_overlay.png", "b__x_label.png", "b__x_overlay.png"]
    (tmp_path / "file").write_text("x")
    one_line_error(invoke("segment", tmp_path / "a/x.png", "--classes", "sky", "--checkpoint",
                          "", "--out", tmp_path / "file"), "--out", "is a file")


def test_masks_folder_moved_elsewhere_is_resumed_not_refused(synth_root, tmp_path):
    src = synth_root / "train" / "images"
    args = ["masks", "--input", src, "--shard-size", 5]
    assert invoke(*args, "--out", tmp_path / "a").exit_code == 0
    shutil.move(tmp_path / "a", tmp_path / "b")
    result = invoke(*args, "--out", tmp_path / "b")
    assert result.exit_code == 0 and "3 already done" in result.output, result.output
    one_line_error(invoke(*args, "--out", tmp_path / "b", "--shard-size", 4), "shard_size")


def test_masks_into_a_locked_folder_inside_its_input_or_a_file(synth_root, tmp_path):
    from pipeline.masks import folder_lock

    src = tmp_path / "src"
    shutil.copytree(synth_root / "train" / "images", src)
    assert invoke("masks", "--input", src, "--out", tmp_path / "out").exit_code == 0
    with folder_lock(tmp_path / "out"):
        one_line_error(invoke("masks", "--input", src, "--out", tmp_path / "out"),
                       "another masks run")
    one_line_error(invoke("masks", "--input", src, "--out", src / "shards"), "inside masks.input")
    (tmp_path / "f").write_text("x")
    one_line_error(invoke("masks", "--input", src, "--out", tmp_path / "f"), "is a file")


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("setting, fragment", [
    ("train.device=gpu", "'train.device' must be auto, cpu, cuda or cuda:N"),
    ("train.amp=fp8", "'train.amp' must be one of bf16, fp16, none"),
    ("masks.shard_size=0", "'masks.shard_size' must be >= 1"),
    ("masks.shard_size=-5", "'masks.shard_size' must be >= 1"),
    ("train.head_widths=[8,8]", "'train.head_widths' must have 3 items"),
    ("train.lr.x=1", "unknown key 'train.lr.x'"),
    ("train.lr=[1", "not a valid YAML value"),
    ("train.checkpoint_every=0", "'train.checkpoint_every' must be >= 1"),
    ("evaluate.batch_size=0", "'evaluate.batch_size' must be >= 1"),
    ("train.dense_mode=clear", "'train.dense_mode' must be one of pixelclip, maskclip"),
    ("train.crop_scale=[0.5,2]", "'train.crop_scale' must be [0.0, 1.0]"),
])
def test_wrong_values_are_one_line_naming_the_key(setting, fragment):
    command = "evaluate" if setting.startswith("evaluate") else (
        "masks" if setting.startswith("masks") else "train")
    one_line_error(invoke(command, "--set", setting), fragment)


def test_cuda_without_a_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    one_line_error(invoke("train", "--device", "cuda:1"), "train.device", "no CUDA device")


def test_bad_params_files(tmp_path):
    one_line_error(invoke("train", "--params", tmp_path), "is a folder")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("train:\n  prompt_template: caf\xe9\n".encode("latin-1"))
    one_line_error(invoke("train", "--params", bad), "latin1.yaml", "not UTF-8")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [\n")
    one_line_error(invoke("train", "--params", broken), "broken.yaml", "not valid YAML")


def test_empty_shard_folder_and_negative_class_count(tmp_path):
    one_line_error(invoke("train", "--shards", tmp_path, *TINY), "train.shards", str(tmp_path))
    one_line_error(invoke("score", "--pred", tmp_path, "--gt", tmp_path, "--num-classes", -3),
                   "--num-classes")


# ---------------------------------------------------------------- inputs and cluster runs


def test_links_that_loop_or_break_and_duplicate_keys_are_rejects(synth_root, tmp_path):
    from shards import schema
    from shards.manifest import read_table

    src = tmp_path / "src"
    shutil.copytree(synth_root / "train" / "images", src)
    (src / "sub").mkdir()
    os.symlink("..", src / "sub" / "loop")
    os.symlink("nowhere.png", src / "broken.png")
    os.symlink("self.png", src / "self.png")
    shutil.copy(src / "sa_000001.png", src / "sa_000001.jpg")  # same key as sa_000001.png
    result = invoke("masks", "--input", src, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    reasons = {r["source"]: r["reason"] for r in read_table(tmp_path / "out" / schema.REJECTS)}
    assert reasons["broken.png"] == "broken symbolic link"
    assert reasons["self.png"] == "symbolic link loop"
    assert "leads back to a folder already read" in reasons["sub/loop"]
    assert reasons["sa_000001.png"] == "same key sa_000001 as sa_000001.jpg, kept there"
    keys = [r["key"] for r in read_table(tmp_path / "out" / schema.MANIFEST)]
    assert len(keys) == len(set(keys)) == 12


def test_random_init_on_purpose_prints_no_warning(caplog):
    from models.clip import load_clip

    load_clip("TinyCLIP-ViT-8", "")
    assert "No pretrained weights" not in caplog.text
