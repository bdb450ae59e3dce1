"""A small convolutional classifier for 28x28 grayscale images (MNIST, Fashion-MNIST).

Taught in part 2, "Text and images as tensors" (convolution) and reused later as the feature
extractor of the image metrics (FID/KID on MNIST need a network trained on MNIST; Inception
cannot be downloaded here and was trained on other images anyway).

Architecture: two blocks of [conv 3x3 -> BatchNorm -> ReLU -> max-pool 2x2], 28 -> 14 -> 7,
then a hidden layer whose activations are the "features", then the class logits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class CNNConfig:
    in_channels: int = 1
    channels: tuple[int, int] = (16, 32)
    feature_dim: int = 64
    n_classes: int = 10
    dropout: float = 0.1


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class CNNClassifier(nn.Module):
    """Images (B, 1, 28, 28) in [-1, 1] -> logits (B, n_classes)."""

    def __init__(self, config: CNNConfig | None = None):
        super().__init__()
        config = config or CNNConfig()
        self.config = config
        c1, c2 = config.channels
        self.conv = nn.Sequential(_block(config.in_channels, c1), _block(c1, c2))
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 7 * 7, config.feature_dim), nn.ReLU())
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.feature_dim, config.n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (B, feature_dim): the embedding used by FID-style metrics."""
        if x.dim() != 4 or x.shape[1:] != (self.config.in_channels, 28, 28):
            raise ValueError(f"CNNClassifier expects (B, {self.config.in_channels}, 28, 28), got {tuple(x.shape)}.")
        return self.fc(self.conv(x))  # (B, c2, 7, 7) -> (B, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))

    def config_dict(self) -> dict:
        return asdict(self.config)
