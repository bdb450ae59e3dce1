"""Training: the one model-agnostic loop, the weight average, and the GAN loop.

Taught in chapter 2.1 ("Deep learning in brief"), where the loop is first written by hand and
then replaced by :func:`fit`; every later chapter trains with it. The package's arrows point one
way: models never import this package, and this package never imports the recipes.

* :mod:`~aigc_course.train.loop`: ``fit``, ``TrainConfig``, ``History``, ``evaluate``,
  ``accuracy`` and ``random_batches`` (a seeded mini-batch function for ``fit``);
* :mod:`~aigc_course.train.ema`: ``EMA``, the average of the weights diffusion models sample with;
* :mod:`~aigc_course.train.gan`: ``train_gan``, two players with two optimisers (chapters 2.3, 3.5, 5.7);
* :mod:`~aigc_course.train.distributed`: data parallelism on ``torch.distributed`` (chapter 5.15):
  ``init_distributed``, ``shard_batch``, ``torchrun``; ``fit`` and ``train_gan`` use DDP by themselves
  when a process group of several processes is initialised.

``python -m aigc_course.train NAME`` retrains the shipped weights ``NAME`` (and
``torchrun --nproc_per_node N -m aigc_course.train NAME`` on N processes): the command line
lives in :mod:`aigc_course.cli`.
"""

from aigc_course.train.distributed import (
           DistInfo,
           dist_info,
           init_distributed,
           is_main_process,
           shard_batch,
           torchrun,
)
from aigc_course.train.ema import EMA
from aigc_course.train.gan import train_gan
from aigc_course.train.loop import (
           History,
           RandomBatches,
           TrainConfig,
           accuracy,
           evaluate,
           fit,
           lr_at,
           random_batches,
           to_device,
)

__all__ = ["EMA", "DistInfo", "History", "RandomBatches", "TrainConfig", "accuracy", "dist_info", "evaluate", "fit",
           "init_distributed", "is_main_process", "lr_at", "random_batches", "shard_batch", "to_device", "torchrun",
           "train_gan"]
