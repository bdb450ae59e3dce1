"""The course's reference models, one family per file.

``build_model(arch, config_dict)`` rebuilds a model from a weights card (see ``pretrained.py``).
"""

from __future__ import annotations

from .baselines import PixelGaussian, PixelGaussianConfig
from .cnn import CNNClassifier, CNNConfig
from .gpt import GPT, GPTConfig
from .mlp import MLP, MLPConfig
from .toy2d import (
    ToyARConfig,
    ToyAutoregressive,
    ToyDiffusion,
    ToyDiffusionConfig,
    ToyGAN,
    ToyGANConfig,
    ToyVAE,
    ToyVAEConfig,
)

ARCHS = {
    "mlp": (MLP, MLPConfig),
    "cnn_classifier": (CNNClassifier, CNNConfig),
    "gpt": (GPT, GPTConfig),
}


def build_model(arch: str, config: dict):
    """Instantiate the architecture ``arch`` from a plain config dict (as stored in a card)."""
    if arch not in ARCHS:
        raise ValueError(f"Unknown architecture {arch!r}. Known: {', '.join(sorted(ARCHS))}.")
    cls, cfg_cls = ARCHS[arch]
    cfg = dict(config)
    for key, value in cfg.items():  # JSON turns tuples into lists
        default = getattr(cfg_cls, key, None) if hasattr(cfg_cls, key) else None
        if isinstance(default, tuple) and isinstance(value, list):
            cfg[key] = tuple(value)
    return cls(cfg_cls(**cfg))


__all__ = [
    "ARCHS", "build_model", "CNNClassifier", "CNNConfig", "GPT", "GPTConfig", "MLP", "MLPConfig",
    "PixelGaussian", "PixelGaussianConfig", "ToyARConfig", "ToyAutoregressive", "ToyDiffusion",
    "ToyDiffusionConfig", "ToyGAN", "ToyGANConfig", "ToyVAE", "ToyVAEConfig",
]
