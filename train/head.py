"""The small convolutional upsampling head of the training loss (docs/method.md).

Each prompt's cosine score map (one channel) is upsampled ×4 into mask logits. The head only
exists at training time: inference uses CLIP's image and text encoders alone.

It runs B·k one-channel maps per step and was the largest cost of a CPU training step, so its
weights and activations are kept channels-last, the layout oneDNN and cuDNN convolutions
prefer (same values; 1.4–2.2× faster forward + backward on CPU, bench/train_step.py).
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_block(channels: int) -> nn.Sequential:
    """Two (conv 3x3 → GroupNorm → ReLU) layers at constant width."""
    groups = max(1, channels // 16)
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.GroupNorm(groups, channels), nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.GroupNorm(groups, channels), nn.ReLU(inplace=True),
    )


class UpsampleHead(nn.Module):
    """conv 1→64, ×2 transposed conv + conv block (64), ×2 transposed conv + block (32), conv →1."""

    def __init__(self, widths: tuple[int, int, int] = (64, 64, 32)) -> None:
        super().__init__()
        w0, w1, w2 = widths
        self.layers = nn.Sequential(
            nn.Conv2d(1, w0, 3, padding=1),
            nn.ConvTranspose2d(w0, w1, 2, stride=2), _conv_block(w1),
            nn.ConvTranspose2d(w1, w2, 2, stride=2), _conv_block(w2),
            nn.Conv2d(w2, 1, 3, padding=1),
        )
        self.to(memory_format=torch.channels_last)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        """``(N, 1, h, w)`` score maps → ``(N, 1, 4h, 4w)`` logits."""
        return self.layers(scores.contiguous(memory_format=torch.channels_last))
