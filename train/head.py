"""The small convolutional upsampling head of the training loss (METHOD.md §8).

Each prompt's cosine score map (one channel) is upsampled ×4 into mask logits. The head only
exists at training time: inference uses CLIP's image and text encoders alone.
"""

from __future__ import annotations

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

    def forward(self, scores):
        """``(N, 1, h, w)`` score maps → ``(N, 1, 4h, 4w)`` logits."""
        return self.layers(scores)
