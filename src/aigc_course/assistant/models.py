"""The shipped tiny assistant: load-or-train its base and instruction-tuned GPTs (chapters 3.9, 5.14).

Both entries come from the recipe ``assistant_gpt`` (``python -m aigc_course.train assistant_gpt``,
see :mod:`aigc_course.recipes.assistant_gpt`): ``assistant_base``, pretrained on the mixed corpus of
``assistant.tasks.pretraining_text``, and ``assistant_sft``, the base after supervised fine-tuning
on the checkable instructions. They share one :class:`~aigc_course.assistant.chat.ChatTokenizer`.
"""

from __future__ import annotations

from aigc_course.assistant.chat import ChatTokenizer
from aigc_course.checkpoint import CheckpointError
from aigc_course.pretrained import find_weights, load_pretrained, load_tokenizer

NAMES = ("assistant_base", "assistant_sft")
RECIPE = "assistant_gpt"


def load_or_train(name: str, device=None):
    """``(model, tokenizer)`` of the shipped (or retrained) weights ``name``; if neither exists,
    train them with the recipe first (minutes on a CPU) and write them to the user's cache."""
    if name not in NAMES:
        raise ValueError(f"Unknown assistant weights {name!r}: use one of {list(NAMES)}.")
    try:
        find_weights(name)
    except CheckpointError:
        from aigc_course.recipes import run

        run(RECIPE)
    model, _card = load_pretrained(name, device=device)
    model.float()  # shipped in float16; computed in float32 (the CPU has no fast float16 matmul)
    tok = load_tokenizer(name)
    if not isinstance(tok, ChatTokenizer):
        raise CheckpointError(f"The tokenizer of {name!r} is not a ChatTokenizer: retrain with "
                              f"`python -m aigc_course.train {RECIPE}`.")
    return model, tok
