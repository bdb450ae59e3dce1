"""The course's reference models, one family per file, and the parts two families share.

Each file names the chapter that teaches it: the MLP and CNN of chapter 2.1, the four toy
families of 2.3, GPT from 2.4 on, the RNN, seq2seq, GAN, VAE and U-Net of part 3, and the
models of the part 5 projects (masked LM, text VAE, captioner, mini-CLIP, latent diffusion).

Every notebook imports models one way: ``from aigc_course.models import GPT, GPTConfig``.
``build_model(arch, config_dict)`` rebuilds a model from a weights card (see ``pretrained.py``).
Models never import the training loop (:mod:`aigc_course.train`): they define losses and
sampling, and the loop trains whatever has a loss.

Shared parts: :mod:`~aigc_course.models.embeddings` (the sinusoidal timestep embedding) and
:mod:`~aigc_course.models.gaussian` (reparameterisation, the Gaussian KL, active units).
"""

from __future__ import annotations

import importlib

from aigc_course.models.baselines import PixelGaussian, PixelGaussianConfig
from aigc_course.models.captioner import Captioner, CaptionerConfig
from aigc_course.models.char_rnn import CharRNN, CharRNNConfig
from aigc_course.models.cnn import CNNClassifier, CNNConfig
from aigc_course.models.conv_vae import ConvVAE, ConvVAEConfig
from aigc_course.models.embeddings import timestep_embedding
from aigc_course.models.gan import DCGAN, GAN, MLPGAN, DCGANConfig, MinibatchStdDev, MLPGANConfig
from aigc_course.models.gaussian import active_units, gaussian_kl, reparameterize
from aigc_course.models.gpt import GPT, GPTConfig
from aigc_course.models.latent_diffusion import LatentDiffusion, LatentDiffusionConfig
from aigc_course.models.masked_lm import MaskedLM, MaskedLMConfig
from aigc_course.models.mini_clip import MiniCLIP, MiniCLIPConfig
from aigc_course.models.mlp import MLP, MLPConfig
from aigc_course.models.seq2seq import Seq2Seq, Seq2SeqConfig
from aigc_course.models.tabular_vae import TabularVAE, TabularVAEConfig
from aigc_course.models.text_vae import TextVAE, TextVAEConfig
from aigc_course.models.toy2d import (
    ToyARConfig,
    ToyAutoregressive,
    ToyDiffusion,
    ToyDiffusionConfig,
    ToyGAN,
    ToyGANConfig,
    ToyVAE,
    ToyVAEConfig,
)
from aigc_course.models.unet import UNet, UNetConfig

# Architecture name (as written in a weights card) -> "module:ModelClass:ConfigClass".
ARCHS = {
    "mlp": "aigc_course.models.mlp:MLP:MLPConfig",
    "cnn_classifier": "aigc_course.models.cnn:CNNClassifier:CNNConfig",
    "gpt": "aigc_course.models.gpt:GPT:GPTConfig",
    "char_rnn": "aigc_course.models.char_rnn:CharRNN:CharRNNConfig",
    "seq2seq": "aigc_course.models.seq2seq:Seq2Seq:Seq2SeqConfig",
    "masked_lm": "aigc_course.models.masked_lm:MaskedLM:MaskedLMConfig",
    "text_vae": "aigc_course.models.text_vae:TextVAE:TextVAEConfig",
    "tabular_vae": "aigc_course.models.tabular_vae:TabularVAE:TabularVAEConfig",
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
    "ARCHS", "build_model", "resolve_arch",
    "CNNClassifier", "CNNConfig", "Captioner", "CaptionerConfig", "CharRNN", "CharRNNConfig", "ConvVAE",
    "ConvVAEConfig", "DCGAN", "DCGANConfig", "GAN", "GPT", "GPTConfig", "LatentDiffusion", "LatentDiffusionConfig",
    "MLP", "MLPConfig", "MLPGAN", "MLPGANConfig", "MaskedLM", "MaskedLMConfig", "MiniCLIP", "MiniCLIPConfig",
    "MinibatchStdDev", "PixelGaussian", "PixelGaussianConfig", "Seq2Seq", "Seq2SeqConfig", "TabularVAE", "TabularVAEConfig", "TextVAE",
    "TextVAEConfig", "ToyARConfig", "ToyAutoregressive", "ToyDiffusion", "ToyDiffusionConfig", "ToyGAN",
    "ToyGANConfig", "ToyVAE", "ToyVAEConfig", "UNet", "UNetConfig", "active_units", "gaussian_kl",
    "reparameterize", "timestep_embedding",
]
