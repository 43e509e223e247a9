"""Sinkhorn equipartition, mask pooling, cluster targets, the EMA rule and the upsampling head."""

import torch
import torch.nn.functional as F

from train.clustering import assign, cluster_targets, mask_pool, mask_pool_naive, sinkhorn, usage
from train.model import ema_update


def _separable(k: int = 4, per: int = 25, dim: int = 16, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(k, dim, generator=gen), dim=-1)
    labels = torch.arange(k).repeat_interleave(per)
    feats = centres[labels] + 0.05 * torch.randn(k * per, dim, generator=gen)
    return F.normalize(feats, dim=-1), centres, labels


def test_sinkhorn_uniform_marginals_and_hard_assignment_on_separable_data():
    feats, centres, labels = _separable()
    q = sinkhorn(20.0 * feats @ centres.t(), iters=3)
    assert torch.allclose(q.sum(dim=1), torch.ones(len(feats)), atol=1e-5)
    marginals = q.sum(dim=0) / len(feats)
    assert torch.allclose(marginals, torch.full((4,), 0.25), atol=0.02)
    assert torch.equal(q.argmax(dim=1), labels)
    assert (q.max(dim=1).values > 0.9).all()


def test_sinkhorn_spreads_a_collapsed_start():
    """All samples nearest the same prototype: plain argmax collapses, Sinkhorn does not."""
    feats, centres, _ = _separable()
    logits = feats @ centres.t() * 0.1
    logits[:, 0] += 1.0
    assert (logits.argmax(dim=1) == 0).all()
    hard = sinkhorn(logits, iters=10).argmax(dim=1)
    assert len(hard.unique()) == 4


def test_mask_pool_equals_naive_loop():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 8, 4, 4, generator=gen)
    masks = torch.rand(3, 5, 16, 16, generator=gen) > 0.6
    masks[1, 3:] = False  # padding masks
    fast, slow = mask_pool(feats, masks), mask_pool_naive(feats, masks)
    assert fast.shape == (3, 5, 8)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert torch.equal(fast[1, 3:], torch.zeros(2, 8))


def test_assign_and_targets_union_masks_per_cluster():
    masks = torch.zeros(1, 3, 4, 4, dtype=torch.bool)
    masks[0, 0, :2], masks[0, 1, 2:], masks[0, 2, :, :1] = True, True, True
    valid = torch.tensor([[True, True, False]])
    labels = torch.tensor([[1, 1, -1]])
    target = cluster_targets(masks, labels, 3)
    assert target.shape == (1, 3, 4, 4)
    assert target[0, 1].all() and target[0, 0].sum() == 0 and target[0, 2].sum() == 0
    feats = torch.eye(3)[:2].reshape(1, 2, 3)
    got = assign(torch.cat([feats, torch.zeros(1, 1, 3)], 1), valid, torch.eye(3), 50.0, 3)
    assert got[0, 2] == -1 and got[0, 0] != got[0, 1]
    assert usage(got, 3).sum() == 2


def test_ema_update_rule():
    student, teacher = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.clone() for p in teacher.parameters()]
    ema_update(teacher, student, 0.9)
    for p_t, p_0, p_s in zip(teacher.parameters(), before, student.parameters(), strict=True):
        assert torch.allclose(p_t, 0.9 * p_0 + 0.1 * p_s)


def test_head_upsamples_x4_and_its_channels_last_layout_keeps_the_values():
    from train.head import UpsampleHead

    torch.manual_seed(0)
    head = UpsampleHead((8, 8, 4))
    maps = torch.randn(6, 1, 5, 7, requires_grad=True)
    out = head(maps)
    assert out.shape == (6, 1, 20, 28)
    plain = head.to(memory_format=torch.contiguous_format).layers(maps.detach())
    assert torch.allclose(out, plain, atol=1e-5)
    out.sum().backward()
    assert maps.grad is not None and maps.grad.abs().sum() > 0


def _sinkhorn_rank(rank: int, port: int, logits: torch.Tensor, out) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    half = logits.shape[0] // 2
    out[rank] = sinkhorn(logits[rank * half:(rank + 1) * half], iters=3)
    dist.destroy_process_group()


def test_sinkhorn_over_two_ranks_equals_one_process_on_the_whole_batch():
    """The equipartition holds over the global batch: marginals are all-reduced."""
    import socket

    import torch.multiprocessing as mp

    feats, centres, _ = _separable(per=20)
    logits = 10.0 * feats @ centres.t()
    logits[:, 0] += 0.5
    logits = logits[torch.randperm(len(logits), generator=torch.Generator().manual_seed(1))]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_sinkhorn_rank, args=(port, logits, out), nprocs=2)
    together = torch.cat([out[0], out[1]])
    assert torch.allclose(together, sinkhorn(logits, iters=3), atol=1e-6)
    half = len(logits) // 2
    assert not torch.allclose(out[0], sinkhorn(logits[:half], iters=3), atol=1e-4)
