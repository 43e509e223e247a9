"""Learnable class prompts encoded by the frozen CLIP text encoder (docs/method.md).

Each of the k prompts is ``prompt_length`` learnable token embeddings placed into a fixed
template ("A photo of a {} in the scene", the slot taking the learnable tokens). The text
tower runs as open_clip runs it, only the token-embedding lookup is replaced by the template's
embeddings with the slots overwritten. The text tower's weights are never trained; gradients
flow through it to the prompt tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SLOT_WORD = "X"  # a one-token placeholder: its positions in the tokenised template are the slots


def text_tower(model: nn.Module) -> nn.Module:
    """The module holding ``token_embedding`` etc.: the CLIP itself or its ``text`` tower."""
    own = hasattr(model, "token_embedding") or not hasattr(model, "text")
    tower = model if own else model.text
    if getattr(tower, "cls_emb", None) is not None:
        raise NotImplementedError("learnable prompts for text towers with a class token")
    return tower


class PromptLearner(nn.Module):
    """k learnable prompt-token sequences; ``forward(clip)`` → ``(k, D)`` text embeddings.

    The tokens start as the embeddings of random words: drawn from ``vocab`` (token ids) when
    given, else from the whole tokenizer vocabulary as the paper does for OpenAI CLIP, whose
    every token is a word it was trained on.
    """

    def __init__(self, model: nn.Module, tokenizer, num_prompts: int, length: int,
                 template: str, seed: int = 0, vocab: Sequence[int] | None = None) -> None:
        super().__init__()
        if template.count("{}") != 1:
            raise ValueError(f"train.prompt_template needs exactly one '{{}}': {template!r}")
        tower = text_tower(model)
        self.template = template
        tokens = tokenizer([template.format(" ".join([SLOT_WORD] * length))])
        slot_id = int(tokenizer([SLOT_WORD])[0, 1])
        slots = (tokens[0] == slot_id).nonzero().flatten()
        if len(slots) != length:
            raise ValueError(f"template {template!r} already contains the slot word {SLOT_WORD!r}")
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("slots", slots, persistent=False)
        gen = torch.Generator().manual_seed(seed)
        if vocab:
            known = torch.as_tensor(list(vocab), dtype=torch.long)
            words = known[torch.randint(0, len(known), (num_prompts, length), generator=gen)]
        else:
            size = tower.token_embedding.num_embeddings
            words = torch.randint(0, size - 10, (num_prompts, length), generator=gen)
        with torch.no_grad():
            init = tower.token_embedding.weight.detach().cpu()[words].clone()
        self.token_embeddings = nn.Parameter(init)

    @property
    def num_prompts(self) -> int:
        return self.token_embeddings.shape[0]

    def forward(self, model: nn.Module) -> torch.Tensor:
        """Encode the k prompts with the (frozen) text tower of ``model``: ``(k, D)``."""
        tower = text_tower(model)
        k = self.num_prompts
        tokens = self.tokens.to(self.token_embeddings.device).expand(k, -1)
        cast = tower.transformer.get_cast_dtype()
        x = tower.token_embedding(tokens).to(cast)
        x = x.clone()
        x[:, self.slots] = self.token_embeddings.to(cast)
        x = x + tower.positional_embedding[: x.shape[1]].to(cast)
        x = tower.transformer(x, attn_mask=tower.attn_mask)
        x = tower.ln_final(x)
        eot = tokens.argmax(dim=-1)  # the end-of-text token has the largest id
        x = x[torch.arange(k, device=x.device), eot]
        proj = tower.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return x


def read_vocab(path: str | Path, key: str = "train.prompt_vocab") -> list[int]:
    """Token ids of a ``vocab.json`` (written by ``pretrain``); one-line errors name ``key``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: vocabulary file not found: {path}")
    try:
        ids = json.loads(path.read_text())["token_ids"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{key}: {path} is not a vocab.json with 'token_ids' ({exc})") from None
    if not ids or not all(isinstance(i, int) for i in ids):
        raise ValueError(f"{key}: {path} has no integer token ids")
    return ids


def vocab_record(tokens: torch.Tensor, tokenizer) -> dict:
    """What ``vocab.json`` holds: the ids (and words) of every token in tokenised texts,
    special tokens and padding excluded."""
    special = {0, *(int(t) for t in tokenizer([""])[0, :2])}  # padding, start, end of text
    ids = sorted(int(t) for t in tokens.unique() if int(t) not in special)
    decode = getattr(tokenizer, "decode", None)
    words = [decode([i]).strip() for i in ids] if decode else []
    return {"token_ids": ids, "words": words}


def prompt_record(prompts: PromptLearner, model: nn.Module) -> dict:
    """What ``prompts.pt`` holds: token embeddings, their L2-normalised text features, template."""
    with torch.no_grad():
        features = F.normalize(prompts(model).float(), dim=-1)
    return {"token_embeddings": prompts.token_embeddings.detach().cpu().clone(),
            "text_features": features.cpu(), "template": prompts.template}
