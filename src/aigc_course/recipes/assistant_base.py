"""Recipe ``assistant_base``: the pretrained base model of the tiny assistant (chapters 3.9, 5.14).

It is written together with the other entry by one run of :mod:`aigc_course.recipes.assistant_gpt`
(the SFT model starts from the base): ``python -m aigc_course.train assistant_base`` runs that recipe.
"""

from __future__ import annotations

from aigc_course.recipes.assistant_gpt import train

__all__ = ["train"]
