"""An interactive decoding playground: move the knobs, watch the next-token distribution change.

Taught at the end of chapter 3.3, "Transformer text generation and decoding strategies". For one
prompt it shows (a) the model's next-token distribution before (grey) and after (colour)
repetition penalty, temperature, top-k and top-p, and (b) a continuation sampled with those
settings. In Jupyter the knobs are ipywidgets sliders; while the book is built (``AIGC_BOOK=1``)
or without ipywidgets, the same drawing is made for a few fixed settings side by side, like
:func:`aigc_course.widgets.interactive_figure`.
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from aigc_course.runtime import in_book_build
from aigc_course.text.decoding import gpt_next_logits, process_logits, sample

DEFAULT_SETTINGS = (
    {"temperature": 0.5, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0},
    {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0},
    {"temperature": 1.0, "top_k": 5, "top_p": 1.0, "repetition_penalty": 1.0},
    {"temperature": 1.0, "top_k": 0, "top_p": 0.8, "repetition_penalty": 1.3},
)


def _label(ch: str) -> str:
    return {"\n": "\\n", " ": "␣"}.get(ch, ch)


def _knobs(s: dict) -> dict:
    """Slider values -> keyword arguments of :func:`sample` (top_k = 0 means off)."""
    return {"temperature": s["temperature"], "top_k": s["top_k"] or None, "top_p": s["top_p"],
            "repetition_penalty": s["repetition_penalty"]}


def next_token_distribution(next_logits, ids: torch.Tensor, **knobs) -> tuple[torch.Tensor, torch.Tensor]:
    """(raw probabilities (V,), processed probabilities (V,)) of the next token after ``ids`` (1, T)."""
    logits = next_logits(ids)[0].float()  # (V,)
    processed = process_logits(logits[None], ids, **knobs)[0]
    return F.softmax(logits, -1), F.softmax(processed, -1)


def draw_distribution(ax, p_raw: torch.Tensor, p_new: torch.Tensor, tokenizer, top: int = 15) -> None:
    """Bars of the ``top`` likeliest tokens of the raw distribution, raw (grey) and processed."""
    order = p_raw.argsort(descending=True)[:top]
    xs = range(len(order))
    ax.bar(xs, p_raw[order].cpu().numpy(), color="0.8", label="model")
    ax.bar(xs, p_new[order].cpu().numpy(), width=0.5, color="C0", label="after knobs")
    ax.set_xticks(list(xs), [_label(tokenizer.decode([i])) for i in order.tolist()])
    ax.set_ylim(0, 1)
    ax.set_ylabel("probability of the next token")
    kept = int((p_new > 0).sum())
    ax.text(0.98, 0.95, f"{kept} tokens kept", transform=ax.transAxes, ha="right", va="top")
    ax.legend(loc="center right", fontsize=8)


def _continuation(next_logits, ids, n_new, tokenizer, seed, **knobs) -> str:
    gen = torch.Generator(device=ids.device).manual_seed(seed)
    out = sample(next_logits, ids, n_new, generator=gen, **knobs)
    return tokenizer.decode(out[0, ids.shape[1]:].tolist())


def _title(s: dict) -> str:
    k = s["top_k"] or "off"
    return f"T={s['temperature']:g}  top-k={k}  top-p={s['top_p']:g}  rep={s['repetition_penalty']:g}"


def static_playground(model, tokenizer, prompt: str, settings=DEFAULT_SETTINGS, n_new: int = 120,
                      seed: int = 0, top: int = 15):
    """One column per setting: the distribution on top, the sampled continuation below."""
    next_logits = gpt_next_logits(model)
    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer.encode(prompt)], device=device)  # (1, T)
    fig, axes = plt.subplots(2, len(settings), figsize=(4.2 * len(settings), 6.4),
                             gridspec_kw={"height_ratios": [1.1, 1]}, squeeze=False)
    for col, s in enumerate(settings):
        knobs = _knobs(s)
        draw_distribution(axes[0, col], *next_token_distribution(next_logits, ids, **knobs), tokenizer, top)
        axes[0, col].set_title(_title(s), fontsize=9)
        text = _continuation(next_logits, ids, n_new, tokenizer, seed, **knobs)
        wrapped = "\n".join(textwrap.fill(line, 38) for line in (prompt + text).splitlines())
        axes[1, col].text(0, 1, wrapped, va="top", family="monospace", fontsize=7.5)
        axes[1, col].axis("off")
    fig.suptitle(f"Next token after {prompt!r} and a sampled continuation (seed {seed})")
    fig.tight_layout()
    return fig


def decoding_playground(model, tokenizer, prompt: str = "ROMEO:\n", n_new: int = 200, seed: int = 0,
                        static: bool | None = None, settings=DEFAULT_SETTINGS):
    """Sliders for temperature, top-k, top-p and repetition penalty over a GPT's decoding.

    Returns the widget box, or the static figure (:func:`static_playground`) in the book build,
    without ipywidgets, or when ``static=True``.
    """
    if static is None:
        static = in_book_build()
    try:
        if static:
            raise ImportError
        import ipywidgets as w
        from IPython.display import display
    except ImportError:
        return static_playground(model, tokenizer, prompt, settings, min(n_new, 120), seed)

    next_logits = gpt_next_logits(model)
    device = next(model.parameters()).device
    sliders = {
        "temperature": w.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.05, description="temperature"),
        "top_k": w.IntSlider(value=0, min=0, max=tokenizer.vocab_size, description="top-k (0=off)"),
        "top_p": w.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top-p"),
        "repetition_penalty": w.FloatSlider(value=1.0, min=1.0, max=2.0, step=0.05, description="rep. penalty"),
    }
    prompt_box = w.Text(value=prompt, description="prompt")
    out = w.Output()

    def redraw(change=None):
        s = {name: sl.value for name, sl in sliders.items()}
        text = prompt_box.value or "\n"
        with out:
            out.clear_output(wait=True)
            try:
                ids = torch.tensor([tokenizer.encode(text)], device=device)  # (1, T)
            except ValueError as err:  # a character the model has never seen
                print(err)
                return
            fig, ax = plt.subplots(figsize=(7, 3.2))
            draw_distribution(ax, *next_token_distribution(next_logits, ids, **_knobs(s)), tokenizer)
            ax.set_title(_title(s), fontsize=9)
            plt.show()
            print(text + _continuation(next_logits, ids, n_new, tokenizer, seed, **_knobs(s)))

    for widget in (*sliders.values(), prompt_box):
        widget.continuous_update = False
        widget.observe(redraw, names="value")
    redraw()
    box = w.VBox([prompt_box, *sliders.values(), out])
    display(box)
    return box
