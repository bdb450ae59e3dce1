"""The course's reference models, one family per file.

``build_model(arch, config_dict)`` rebuilds a model from a weights card (see ``pretrained.py``).
"""

from __future__ import annotations

import importlib

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

# Architecture name (as written in a weights card) -> "module:ModelClass:ConfigClass".
# Imported lazily, so that a card names its model without importing every family.
ARCHS = {
    "mlp": "aigc_course.models.mlp:MLP:MLPConfig",
    "cnn_classifier": "aigc_course.models.cnn:CNNClassifier:CNNConfig",
    "gpt": "aigc_course.models.gpt:GPT:GPTConfig",
    "char_rnn": "aigc_course.models.char_rnn:CharRNN:CharRNNConfig",
    "seq2seq": "aigc_course.models.seq2seq:Seq2Seq:Seq2SeqConfig",
    "masked_lm": "aigc_course.models.masked_lm:MaskedLM:MaskedLMConfig",
    "text_vae": "aigc_course.models.text_vae:TextVAE:TextVAEConfig",
    "unet": "aigc_course.models.unet:UNet:UNetConfig",
    "captioner": "aigc_course.models.captioner:Captioner:CaptionerConfig",
    "dcgan": "aigc_course.models.gan:DCGAN:DCGANConfig",
    "mlp_gan": "aigc_course.models.gan:MLPGAN:MLPGANConfig",
    "mini_clip": "aigc_course.models.mini_clip:MiniCLIP:MiniCLIPConfig",
    "latent_diffusion": "aigc_course.models.latent_diffusion:LatentDiffusion:LatentDiffusionConfig",
    "conv_vae": "aigc_course.models.conv_vae:ConvVAE:ConvVAEConfig",
}


def resolve_arch(arch: str):
    """(model class, config class) of the architecture ``arch``."""
    if arch not in ARCHS:
        raise ValueError(f"Unknown architecture {arch!r}. Known: {', '.join(sorted(ARCHS))}.")
    module, model_name, config_name = ARCHS[arch].split(":")
    mod = importlib.import_module(module)
    return getattr(mod, model_name), getattr(mod, config_name)


def build_model(arch: str, config: dict):
    """Instantiate the architecture ``arch`` from a plain config dict (as stored in a card)."""
    cls, cfg_cls = resolve_arch(arch)
    cfg = dict(config)
    for key, value in cfg.items():  # JSON turns tuples into lists
        default = getattr(cfg_cls, key, None) if hasattr(cfg_cls, key) else None
        if isinstance(default, tuple) and isinstance(value, list):
            cfg[key] = tuple(value)
    return cls(cfg_cls(**cfg))


__all__ = [
    "ARCHS", "build_model", "resolve_arch", "CNNClassifier", "CNNConfig", "GPT", "GPTConfig", "MLP", "MLPConfig",
    "PixelGaussian", "PixelGaussianConfig", "ToyARConfig", "ToyAutoregressive", "ToyDiffusion",
    "ToyDiffusionConfig", "ToyGAN", "ToyGANConfig", "ToyVAE", "ToyVAEConfig",
]
