"""The ``pretrain`` stage: a tiny CLIP trained contrastively on the synthetic web photos.

It stands in for OpenAI/LAION weights in the embedded default: like real CLIP it learns what
is in an image from captions (image-level recognition) while its dense features are never
trained directly. Two choices make it behave like real CLIP at region level (RESULTS.md,
diagnosis): the captioned photos show scenes at every scale, close-ups included, as web photos
do; and its image embedding mixes the class token (how real CLIP pools) with the average of
the patch tokens (``pretrain.patch_weight``). With only 8×8 tokens and 4 blocks, a class token
alone leaves the patch tokens without meaning; the average alone trains them so directly that
they already agree inside every region and the method has little to denoise. The result is a
plain open_clip state dict (``final.pt``) that
``open_clip.create_model_and_transforms(name, pretrained=path)`` loads.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from config import ConfigError, PretrainParams, to_dict
from models.clip import CLIPBundle, load_clip, normalise, write_weights_info
from models.prompts import vocab_record
from train.optim import atomic_save, decay_groups, lr_factor, seed_everything, set_lr

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainSummary:
    out: str
    steps: int
    loss: float
    retrieval_top1: float  # image → caption top-1 on (up to 256) training pairs
    seconds: float

    def line(self) -> str:
        return (f"{self.steps} steps, loss {self.loss:.3f}, image→caption top-1 "
                f"{self.retrieval_top1:.2f}, {self.seconds:.0f}s → {self.out}/final.pt")


def load_pairs(folder: str | Path, size: int) -> tuple[torch.Tensor, list[str]]:
    """``captions.jsonl`` + ``images/`` → uint8 images ``(N, 3, size, size)`` and captions."""
    folder = Path(folder)
    path = folder / "captions.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"pretrain.captions: no captions.jsonl in {folder}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    images = []
    for row in rows:
        with Image.open(folder / "images" / row["file_name"]) as img:
            img = img.convert("RGB").resize((size, size), Image.BICUBIC)
            images.append(np.asarray(img))
    array = np.stack(images).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(array)), [r["caption"] for r in rows]


def augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip per image (colours and content stay: captions name them)."""
    flip = torch.rand(images.shape[0], generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def image_embedding(visual: torch.nn.Module, images: torch.Tensor,
                    patch_weight: float) -> torch.Tensor:
    """L2-normalised image embeddings: ``patch_weight`` of the patch-token average's
    direction, the rest the class token's (open_clip tower with ``pool_type: tok``)."""
    visual.output_tokens = True  # open_clip's switch for returning (pooled, patch tokens)
    try:
        cls, patches = visual(images)
    finally:
        visual.output_tokens = False
    avg = patches.mean(dim=1) @ visual.proj
    mix = patch_weight * F.normalize(avg, dim=-1) + (1 - patch_weight) * F.normalize(cls, dim=-1)
    return F.normalize(mix, dim=-1)


def contrastive_loss(model: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor,
                     patch_weight: float) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP over one batch."""
    img = image_embedding(model.visual, images, patch_weight)
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    logits = model.logit_scale.exp().clamp(max=100) * img @ txt.t()
    target = torch.arange(len(images), device=images.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


@torch.no_grad()
def retrieval_top1(bundle: CLIPBundle, images: torch.Tensor, tokens: torch.Tensor,
                   patch_weight: float) -> float:
    """Image → caption top-1 accuracy, counting a hit when the caption text is identical."""
    model = bundle.model.eval()
    img = image_embedding(model.visual, normalise(images, bundle.mean, bundle.std), patch_weight)
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    best = (img @ txt.t()).argmax(dim=1)
    same = (tokens[best] == tokens).all(dim=1)
    return float(same.float().mean())


class UsedRows(nn.Module):
    """The rows ``used`` of a token-embedding table, as a trainable table of their own."""

    def __init__(self, table: nn.Embedding, used: torch.Tensor) -> None:
        super().__init__()
        self.rows = nn.Parameter(table.weight.detach()[used].clone())
        # ids outside ``used`` map to -1, so that looking one up fails instead of reading row 0
        lookup = torch.full((table.num_embeddings,), -1, dtype=torch.long, device=used.device)
        lookup[used] = torch.arange(len(used), device=used.device)
        self.register_buffer("lookup", lookup, persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(self.lookup[ids], self.rows)


@contextmanager
def only_used_rows(model: nn.Module, tokens: torch.Tensor) -> Iterator[None]:
    """Train only the token-embedding rows that ``tokens`` use, then write them back.

    The other rows get no gradient and, undecayed (``decay_groups``), AdamW leaves them exactly
    as they are; the tiny CLIP's captions use 37 of 49,408 rows, so keeping the rest out of the
    optimiser saves most of its time (bench/RESULTS.md) and changes no bit of the result.
    """
    table = model.token_embedding
    used = torch.unique(tokens)
    model.token_embedding = UsedRows(table, used)
    try:
        yield
    finally:
        with torch.no_grad():
            table.weight[used] = model.token_embedding.rows
        model.token_embedding = table


def make_optimizer(model: nn.Module, cfg: PretrainParams) -> torch.optim.Optimizer:
    """AdamW over ``model``'s parameters as the stage trains them (``decay_groups``)."""
    return torch.optim.AdamW(decay_groups(list(model.named_parameters()), cfg.lr,
                                          cfg.weight_decay), betas=(0.9, 0.98), eps=1e-6)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, images: torch.Tensor,
               tokens: torch.Tensor, patch_weight: float) -> torch.Tensor:
    """One optimiser step on one batch → its loss."""
    loss = contrastive_loss(model, images, tokens, patch_weight)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def check_tower(visual: torch.nn.Module, cfg: PretrainParams) -> None:
    """The tower must pool by its class token for ``image_embedding`` to mix it in."""
    if not 0.0 <= cfg.patch_weight <= 1.0:
        raise ConfigError(f"pretrain.patch_weight: {cfg.patch_weight} is not in [0, 1]")
    pool = getattr(visual, "pool_type", None)
    if pool != "tok" or getattr(visual, "attn_pool", None) is not None:
        raise ConfigError(f"pretrain.model: {cfg.model} pools by '{pool}'; pretraining needs a "
                          "ViT pooled by its class token ('pool_type': 'tok')")


def run(cfg: PretrainParams) -> PretrainSummary:
    """Train the tiny CLIP for ``cfg.steps`` steps and write ``cfg.out/final.pt``."""
    start = time.time()
    seed_everything(cfg.seed)
    bundle = load_clip(cfg.model, "", key="pretrain.model")
    check_tower(bundle.model.visual, cfg)
    model = bundle.model.train()
    images, captions = load_pairs(cfg.captions, cfg.image_size)
    tokens = bundle.tokenizer(captions)
    gen = torch.Generator().manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    loss = torch.tensor(float("nan"))
    with only_used_rows(model, tokens), open(out / "log.jsonl", "w") as logf:
        opt = make_optimizer(model, cfg)
        for step in range(cfg.steps):
            set_lr(opt, lr_factor(step, cfg.steps, cfg.warmup_steps))
            idx = torch.randperm(len(images), generator=gen)[: cfg.batch_size]
            batch = normalise(augment(images[idx], gen), bundle.mean, bundle.std)
            loss = train_step(model, opt, batch, tokens[idx], cfg.patch_weight)
            if step % 50 == 0 or step == cfg.steps - 1:
                logf.write(json.dumps({"step": step, "loss": round(loss.item(), 5)}) + "\n")
                log.info("pretrain step %d loss %.4f", step, loss.item())
    top1 = retrieval_top1(bundle, images[:256], tokens[:256], cfg.patch_weight)
    atomic_save(model.state_dict(), out / "final.pt")
    write_weights_info(out / "final.pt", cfg.model, "")
    (out / "vocab.json").write_text(json.dumps(vocab_record(tokens, bundle.tokenizer)))
    (out / "params.json").write_text(json.dumps(to_dict(cfg), indent=2))
    summary = PretrainSummary(str(out), cfg.steps, loss.item(), top1, time.time() - start)
    (out / "summary.json").write_text(json.dumps(summary.__dict__, indent=2))
    return summary
