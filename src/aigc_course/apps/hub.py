"""The "real thing" sections of Part 6: an open instruction-tuned LLM from the Hugging Face Hub.

Each application chapter (6.1-6.7) ends its workflow with the same job done by a released model
on a Colab GPU. The code of those sections is the same for a real model and for a tiny one:

* :func:`tiny_instruct_lm`: a ``LlamaForCausalLM`` (the architecture family of most open
  instruction-tuned models) built from a small config with random weights, and a byte-level
  ``PreTrainedTokenizerFast`` with a chat template, both made offline in a fraction of a second.
  Its replies are gibberish; tests and CI run every line of the chapters' real sections on it.
* :func:`load_instruct_lm`: the released weights (``INSTRUCT_LM``, about 1 GB in bfloat16).
* :func:`chat`: messages -> chat template -> ``model.generate`` -> the decoded new tokens.
* :func:`real_models_unavailable`: why a real run cannot happen here (fast mode, no GPU, offline).

Stable Diffusion has its own module, :mod:`aigc_course.diffusion.stable_diffusion` (chapter 3.8).
Needs ``transformers`` and ``tokenizers``.
"""

from __future__ import annotations

import os
import socket

import torch

from aigc_course.runtime import is_fast

INSTRUCT_LM = "Qwen/Qwen2.5-0.5B-Instruct"
HUB_HOST = "huggingface.co"

# A minimal chat template in the ChatML style that Qwen uses: one block per message, then the
# opening of the assistant's turn when a reply is wanted.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _hub_reachable(timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def real_models_unavailable(device) -> str | None:
    """Why a released model cannot be downloaded and run on ``device`` here, or None if it can."""
    if is_fast():
        return "fast mode (AIGC_FAST=1)"
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return "no CUDA GPU"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return "HF_HUB_OFFLINE is set"
    if not _hub_reachable():
        return f"{HUB_HOST} cannot be reached (offline)"
    try:
        import transformers  # noqa: F401
    except ImportError:
        return "transformers is not installed (pip install transformers)"
    return None


def tiny_tokenizer():
    """A byte-level BPE tokenizer with no merges (256 byte tokens + the chat's special tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = pre_tokenizers.ByteLevel.alphabet()  # 256 printable stand-ins for the bytes
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in sorted(byte_chars):
        vocab[ch] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=SPECIAL_TOKENS[1:])
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_instruct_lm(seed: int = 0, hidden_size: int = 32, num_layers: int = 2):
    """A randomly initialised ``LlamaForCausalLM`` and :func:`tiny_tokenizer`, offline, on the CPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    return model, tok


def load_instruct_lm(model_id: str = INSTRUCT_LM, device="cuda", dtype: torch.dtype = torch.bfloat16):
    """The released weights of ``model_id`` from the Hub, in ``dtype`` on ``device``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_id)
    model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype).to(device).eval()
    return model, tok


def _as_messages(messages) -> list[dict]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, (list, tuple)) or not all(
            isinstance(m, dict) and {"role", "content"} <= set(m) for m in messages):
        raise TypeError("messages must be a string or a list of {'role': ..., 'content': ...} dicts, "
                        f"got {type(messages).__name__}")
    return list(messages)


@torch.no_grad()
def chat(model, tokenizer, messages, max_new_tokens: int = 64, temperature: float = 0.7,
         num_return_sequences: int = 1, seed: int = 0) -> list[str]:
    """Replies of an instruction-tuned ``model`` to ``messages`` (a string is one user turn).

    The prompt is the tokenizer's chat template with the assistant's turn opened; sampling is at
    ``temperature`` (0 means greedy) and seeded, so the same call gives the same replies."""
    if max_new_tokens < 1 or num_return_sequences < 1:
        raise ValueError("max_new_tokens and num_return_sequences must be at least 1")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    device = next(model.parameters()).device
    ids = tokenizer.apply_chat_template(_as_messages(messages), add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"].to(device)
    torch.manual_seed(seed)
    sample = temperature > 0
    n = num_return_sequences if sample else 1  # greedy decoding has a single answer
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=sample, temperature=temperature if sample else None,
                         top_p=None, top_k=None, num_return_sequences=n,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    new = out[:, ids.shape[1]:]  # (n, <= max_new_tokens): the reply only
    replies = [tokenizer.decode(row, skip_special_tokens=True) for row in new]
    return replies * (num_return_sequences // n)
