"""An exponential moving average of a model's weights (chapters 3.7 and 5.9-5.11).

The diffusion recipes train with :func:`aigc_course.train.fit` and keep this average through its
``on_step`` hook; the shipped diffusion weights are the average, as in Ho et al. (2020).
"""

from __future__ import annotations

import torch


class EMA:
    """An exponential moving average of a model's weights, the copy diffusion models sample
    with: theta_ema <- decay theta_ema + (1 - decay) theta after every optimizer step.

    The average starts at zero and is divided by 1 - decay^n after n updates (the bias
    correction of Adam): a plain EMA started at the initial weights would still hold
    decay^n of them, 13.5% after 2,000 steps at decay 0.999, and untrained weights in the
    shipped model make its samples noisy. Buffers that are not floating point are copied."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}.")
        self.decay = decay
        self.num_updates = 0
        self.shadow = {k: torch.zeros_like(v) if v.dtype.is_floating_point else v.detach().clone()
                       for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.num_updates += 1
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v.detach(), 1.0 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def averaged(self) -> dict[str, torch.Tensor]:
        """The bias-corrected average, a weighted mean of the weights after each update."""
        if self.num_updates == 0:
            raise ValueError("The EMA has no update yet: call update(model) after an optimizer step.")
        correction = 1.0 - self.decay ** self.num_updates
        return {k: v / correction if v.dtype.is_floating_point else v for k, v in self.shadow.items()}

    def copy_to(self, model: torch.nn.Module) -> None:
        """Load the averaged weights into ``model``."""
        model.load_state_dict(self.averaged())
