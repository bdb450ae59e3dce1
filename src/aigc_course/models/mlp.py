"""A multilayer perceptron: the first network of the course.

Taught in part 2, "Deep learning in brief": a stack of affine maps h = act(W h + b), the last
one without activation so that it returns logits (classification) or raw values (regression).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


@dataclass
class MLPConfig:
    in_dim: int = 784
    hidden: list[int] = field(default_factory=lambda: [256, 128])
    out_dim: int = 10
    activation: str = "relu"
    dropout: float = 0.0

    @classmethod
    def mnist(cls) -> MLPConfig:
        return cls(in_dim=784, hidden=[256, 128], out_dim=10)

    @classmethod
    def toy(cls, in_dim: int = 2, out_dim: int = 2, width: int = 64) -> MLPConfig:
        return cls(in_dim=in_dim, hidden=[width, width], out_dim=out_dim)


class MLP(nn.Module):
    """Input (B, in_dim) or images (B, C, H, W), flattened; output (B, out_dim)."""

    def __init__(self, config: MLPConfig):
        super().__init__()
        if config.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {config.activation!r}.")
        self.config = config
        dims = [config.in_dim, *config.hidden]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(d_in, d_out), _ACTIVATIONS[config.activation]()]
            if config.dropout:
                layers.append(nn.Dropout(config.dropout))
        layers.append(nn.Linear(dims[-1], config.out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)  # (B, C, H, W) -> (B, C*H*W); a no-op for (B, D)
        if x.shape[1] != self.config.in_dim:
            raise ValueError(f"MLP expects {self.config.in_dim} input features, got {x.shape[1]}.")
        return self.net(x)

    def config_dict(self) -> dict:
        return asdict(self.config)
