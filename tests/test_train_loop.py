"""The training loop: what one step changes, resume, export, CLI and DDP on gloo."""

import json
import os
import socket
from pathlib import Path

import pytest
import torch

from config import TrainParams


def tiny_cfg(shards, out, **kw) -> TrainParams:
    base = dict(shards=str(shards), out=str(out), clip_pretrained="", clip_resolution=32,
                mask_resolution=16, num_prompts=8, head_widths=(16, 16, 8), batch_size=4,
                steps=4, checkpoint_every=2, log_every=1, shuffle_buffer=4,
                lr_visual_mult=1.0, visual_delay_steps=0, prompt_vocab="",
                live=str(Path(out) / "live"))
    base.update(kw)
    return TrainParams(**base)


@pytest.mark.parametrize("mode", ["maskclip", "clearclip", "naclip"])
def test_one_step_changes_image_encoder_and_prompts_not_text(shard_dir, tmp_path, mode):
    """Also through the residual-free last blocks, which training may go through too."""
    from shards.reader import list_shards
    from train.data import batches
    from train.loop import build, train_step

    run = build(tiny_cfg(shard_dir, tmp_path, trainable="attention", dense_mode=mode))
    before = {k: v.clone() for k, v in run.clip.state_dict().items()}
    prompts = run.core.prompts.token_embeddings.detach().clone()
    teacher = {k: v.clone() for k, v in run.teacher.state_dict().items()}
    batch = next(batches(run.cfg, list_shards(shard_dir), 4, seed=0))
    metrics = train_step(run, [batch], 0)
    after = run.clip.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("visual.") for k in changed)
    assert all("attn" in k or "position" in k for k in changed)
    assert not torch.equal(prompts, run.core.prompts.token_embeddings)
    # the teacher moved (before use) towards the student it was copied from: unchanged but for
    # rounding; the student's update reaches it from the next step on
    assert all(torch.allclose(teacher[k], v, atol=1e-6)
               for k, v in run.teacher.state_dict().items())
    assert metrics["loss"] > 0 and 1 <= metrics["used"] <= 8


def test_the_teacher_clusters_through_teacher_dense_mode(shard_dir, tmp_path):
    """The masks are assigned from the teacher's features in its own block, not the student's."""
    from dataclasses import replace

    from models.clip import normalise
    from models.dense import dense_features
    from shards.reader import list_shards
    from train.clustering import assign, mask_pool
    from train.data import batches, expand_masks
    from train.loop import build
    from train.model import batch_loss

    run = build(tiny_cfg(shard_dir, tmp_path, max_masks=8, dense_mode="clearclip"))
    batch = next(batches(run.cfg, list_shards(shard_dir), 4, seed=0))
    if "toggles" in batch:
        batch["masks"], batch["valid"] = expand_masks(batch, run.cfg.max_masks)
    with torch.no_grad():
        _, own = batch_loss(run.net, run.clip, run.teacher, batch, run.cfg, run.stats)
        cfg = replace(run.cfg, teacher_dense_mode="maskclip")
        _, labels = batch_loss(run.net, run.clip, run.teacher, batch, cfg, run.stats)
        feats = dense_features(run.teacher, normalise(batch["teacher"], *run.stats), "maskclip")
        expected = assign(mask_pool(feats.float(), batch["masks"]), batch["valid"],
                          run.core.prompts(run.clip), cfg.logit_scale, cfg.sinkhorn_iters)
    assert torch.equal(labels, expected)
    assert not torch.equal(labels, own)


def test_visual_delay_holds_the_image_tower_while_prompts_learn(shard_dir, tmp_path):
    from shards.reader import list_shards
    from train.data import batches
    from train.loop import build, train_step

    run = build(tiny_cfg(shard_dir, tmp_path, visual_delay_steps=1))
    visual = {k: v.clone() for k, v in run.core.visual.state_dict().items()}
    prompts = run.core.prompts.token_embeddings.detach().clone()
    data = batches(run.cfg, list_shards(shard_dir), 4, seed=0)
    train_step(run, [next(data)], 0)
    assert all(torch.equal(visual[k], v) for k, v in run.core.visual.state_dict().items())
    assert not torch.equal(prompts, run.core.prompts.token_embeddings)
    train_step(run, [next(data)], 1)
    assert any(not torch.equal(visual[k], v) for k, v in run.core.visual.state_dict().items())


def test_the_run_seed_leaves_the_initialisation_to_init_seed(shard_dir, tmp_path):
    """As in the official code (prompt words and head drawn after a fixed ``manual_seed(0)``),
    ``train.seed`` does not change the initial prompts or head; ``train.init_seed`` does."""
    from train.loop import build

    def initial(**kw):
        core = build(tiny_cfg(shard_dir, tmp_path, **kw)).core
        return core.prompts.token_embeddings.detach().clone(), core.head.state_dict()

    (prompts, head), (prompts_5, head_5) = initial(seed=0), initial(seed=5)
    assert torch.equal(prompts, prompts_5)
    assert all(torch.equal(v, head_5[k]) for k, v in head.items())
    other_prompts, other_head = initial(seed=0, init_seed=1)
    assert not torch.equal(prompts, other_prompts)
    assert not all(torch.equal(v, other_head[k]) for k, v in head.items())


def _log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


class Killed(Exception):
    pass


def test_resume_equals_uninterrupted_and_export_loads(shard_dir, tmp_path, monkeypatch):
    import open_clip

    from train import loop

    full = loop.run(tiny_cfg(shard_dir, tmp_path / "full"))
    part = tmp_path / "part"
    real, calls = loop.train_step, {"n": 0}

    def dies_at_step_3(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise Killed  # after the checkpoint of step 2, during step 3
        return real(*args)

    monkeypatch.setattr(loop, "train_step", dies_at_step_3)
    with pytest.raises(Killed):
        loop.run(tiny_cfg(shard_dir, part))
    monkeypatch.setattr(loop, "train_step", real)
    resumed = loop.run(tiny_cfg(shard_dir, part, resume="latest"))
    assert [r["loss"] for r in _log(tmp_path / "full")] == [r["loss"] for r in _log(part)]
    for run_dir in (tmp_path / "full", part):  # dvclive's curves: each step once, on resume too
        rows = (run_dir / "live/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]
        assert [int(r.split("\t")[0]) for r in rows] == [0, 1, 2, 3]  # step, loss
        assert [float(r.split("\t")[1]) for r in rows] == [r["loss"] for r in _log(run_dir)]
    assert full.loss == resumed.loss
    a = torch.load(tmp_path / "full" / "final.pt")
    b = torch.load(part / "final.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)

    model, _, _ = open_clip.create_model_and_transforms(
        "TinyCLIP-ViT-8", pretrained=str(part / "final.pt"))
    assert torch.equal(model.visual.conv1.weight, a["visual.conv1.weight"])
    prompts = torch.load(part / "prompts.pt")
    assert prompts["token_embeddings"].shape == (8, 4, 128)
    assert prompts["text_features"].shape == (8, 128)
    assert torch.allclose(prompts["text_features"].norm(dim=-1), torch.ones(8), atol=1e-5)
    assert "{}" in prompts["template"]


def test_cli_train(shard_dir, tmp_path):
    from click.testing import CliRunner

    from cli import cli

    out = tmp_path / "cli"
    result = CliRunner().invoke(cli, [
        "train", "--shards", str(shard_dir), "--out", str(out), "--steps", "2",
        "--batch-size", "2", "--clip-pretrained", "", "--set", "train.clip_resolution=32",
        "--set", "train.mask_resolution=16", "--set", "train.num_prompts=4",
        "--set", "train.head_widths=[8,8,8]", "--set", "train.prompt_vocab="])
    assert result.exit_code == 0, result.output
    assert "train: 2 steps" in result.output
    assert (out / "final.pt").is_file() and (out / "prompts.pt").is_file()
    # a run given --out keeps its dvclive curves, not the default run's folder
    assert (out / "live" / "metrics.json").is_file()
    assert list((out / "live").rglob("loss.tsv"))
    bad = CliRunner().invoke(cli, ["train", "--clip-pretrained", str(tmp_path / "x.pt"),
                                   "--shards", str(shard_dir)])
    assert bad.exit_code != 0 and "train.clip_pretrained" in bad.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg: TrainParams) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from train.loop import run

    run(cfg)


def test_ddp_two_gloo_processes(shard_dir, tmp_path):
    import torch.multiprocessing as mp

    cfg = tiny_cfg(shard_dir, tmp_path / "ddp", steps=2, device="cpu")
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg), nprocs=2, join=True)
    log = _log(tmp_path / "ddp")
    assert [r["step"] for r in log] == [0, 1]
    assert all(r["masks"] > 0 for r in log)
    assert (tmp_path / "ddp" / "final.pt").is_file()


@pytest.mark.parametrize("bad", [{"batch_size": 3, "grad_accum": 2}])
def test_batch_not_divisible(shard_dir, tmp_path, bad):
    from train.loop import run

    with pytest.raises(ValueError, match="divisible"):
        run(tiny_cfg(shard_dir, tmp_path, **bad))


def _tiny_run(shard_dir, tmp_path, **kw):
    from shards.reader import list_shards
    from train.data import batches, expand_masks
    from train.loop import build

    run = build(tiny_cfg(shard_dir, tmp_path, **kw))
    batch = next(batches(run.cfg, list_shards(shard_dir), 4, seed=0))
    batch["masks"], batch["valid"] = expand_masks(batch, run.cfg.max_masks)
    return run, batch


def test_loss_counts_only_pixels_inside_some_mask(shard_dir, tmp_path, monkeypatch):
    """Changing the student's logits where no mask lies leaves the loss as it is."""
    from train import model as model_module

    run, batch = _tiny_run(shard_dir, tmp_path)
    batch["masks"][:, 0] = False  # the synthetic masks tile the image: leave a hole
    covered = batch["masks"].any(dim=1)
    assert covered.any() and not covered.all()
    base, _ = model_module.batch_loss(run.net, run.clip, run.teacher, batch, run.cfg, run.stats)
    real = model_module.PixelCLIP.forward

    def noisy(self, *args, **kwargs):
        logits, centres = real(self, *args, **kwargs)
        return logits + 50.0 * (~covered).unsqueeze(1), centres

    monkeypatch.setattr(model_module.PixelCLIP, "forward", noisy)
    again, _ = model_module.batch_loss(run.net, run.clip, run.teacher, batch, run.cfg, run.stats)
    assert torch.equal(base, again)


def test_ablation_switches_drop_sinkhorn_and_the_teacher(shard_dir, tmp_path):
    """use_clustering=false assigns by the plain argmax; use_momentum=false takes the
    assignment features from the student, so a broken teacher changes nothing."""
    from models.clip import normalise
    from models.dense import dense_features
    from train.clustering import assign, mask_pool
    from train.model import batch_loss

    run, batch = _tiny_run(shard_dir, tmp_path, use_clustering=False, use_momentum=False)
    _, labels = batch_loss(run.net, run.clip, run.teacher, batch, run.cfg, run.stats)
    with torch.no_grad():
        feats = dense_features(run.core.visual, normalise(batch["teacher"], *run.stats),
                               run.cfg.dense_mode)
        pooled = mask_pool(feats, batch["masks"])
        centres = run.core.prompts(run.clip)
        plain = assign(pooled, batch["valid"], centres, run.cfg.logit_scale, 0)
        sims = torch.nn.functional.normalize(pooled[batch["valid"]], dim=-1) @ \
            torch.nn.functional.normalize(centres, dim=-1).t()
    assert torch.equal(labels, plain) and torch.equal(labels[batch["valid"]], sims.argmax(1))
    for p in run.teacher.parameters():
        p.data.normal_()
    loss_a, labels_a = batch_loss(run.net, run.clip, run.teacher, batch, run.cfg, run.stats)
    loss_b, labels_b = batch_loss(run.net, run.clip, run.teacher, batch, run.cfg, run.stats)
    assert torch.equal(labels_a, labels) and torch.equal(loss_a, loss_b)


def test_grad_accum_steps_with_the_mean_of_the_micro_batch_gradients(shard_dir, tmp_path):
    """Two accumulated micro-batches give the gradient of their mean loss: that of the two
    halves taken apart and averaged (each half clusters its own masks, as on a GPU alone)."""
    from shards.reader import list_shards
    from train.data import batches
    from train.loop import build, train_step

    data = batches(tiny_cfg(shard_dir, tmp_path), list_shards(shard_dir), 2, seed=0)
    halves = [next(data), next(data)]
    grads = []
    for micro in ([halves[0]], [halves[1]], halves):
        run = build(tiny_cfg(shard_dir, tmp_path, grad_clip=1e9, lr=0.0))
        train_step(run, micro, 0)
        grads.append(run.core.prompts.token_embeddings.grad.clone())
    assert torch.allclose(grads[2], (grads[0] + grads[1]) / 2, atol=1e-6)
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize("mode, expect", [("full", "all"), ("none", "nothing")])
def test_trainable_full_and_none(shard_dir, tmp_path, mode, expect):
    from train.model import set_trainable

    run, _ = _tiny_run(shard_dir, tmp_path)
    names = set_trainable(run.core.visual, mode)
    trained = {n for n, p in run.core.visual.named_parameters() if p.requires_grad}
    assert set(names) == trained
    total = {n for n, _ in run.core.visual.named_parameters()}
    assert trained == (total if expect == "all" else set())


def test_checkpoints_are_pruned_to_the_newest(shard_dir, tmp_path):
    from train import checkpoint as ckpt
    from train.loop import run

    run(tiny_cfg(shard_dir, tmp_path / "r", steps=5, checkpoint_every=1))
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "r")] == [3, 4, 5]


def test_saved_bytes_do_not_depend_on_the_file_name(tmp_path):
    """Checkpoints are DVC outputs: the same tensors must give the same md5 wherever saved."""
    from train.optim import atomic_save

    state = {"w": torch.arange(6.0).reshape(2, 3)}
    atomic_save(state, tmp_path / "final.pt")
    atomic_save(state, tmp_path / "step_0000001.pt")
    assert (tmp_path / "final.pt").read_bytes() == (tmp_path / "step_0000001.pt").read_bytes()
    assert not list(tmp_path.glob("*.tmp"))
