"""The chat template, response-only fine-tuning targets, and replying (chapters 3.9 and 5.14).

A chat model reads a conversation written in one fixed *template* with role tokens that no user
can type: ``<|user|>`` instruction ``<|assistant|>`` response ``<|end|>``. Each role token is a
single id of :class:`ChatTokenizer`, a character tokenizer (``text.tokenizers.CharTokenizer``)
with the three role tokens in front. Its vocabulary: every printable ASCII character and the
newline, plus the ``max_other`` most frequent other characters of the corpus (Chinese, mostly)
and ``UNK`` for the rare rest, so that the embedding stays small.

Supervised fine-tuning (SFT) trains on ``template(instruction, response)`` with the next-token
loss, and :func:`encode_sft` sets the target of every prompt position to -100 (ignored by the
cross-entropy) when ``response_only``: the model is taught to *answer*, not to write questions.
Padding is never trained on. :func:`replies` generates for a batch of instructions of different
lengths: each row keeps its own length, the model runs on the right-padded batch, and the next
token of a row is read at its own last position (with causal attention, padding to the right of
a position cannot change it). A row stops at ``<|end|>``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from aigc_course.runtime import multinomial
from aigc_course.text.decoding import filter_logits
from aigc_course.text.tokenizers import CharTokenizer, save_json

USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
SPECIALS = (USER, ASSISTANT, END)
UNK = "□"
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")


class ChatTokenizer:
    """Character tokenizer with the role tokens as ids 0, 1, 2 (``user_id``, ``assistant_id``, ``end_id``).

    >>> tok = ChatTokenizer(["a", "b", UNK])
    >>> tok.encode(USER + "ab" + END)
    [0, 3, 4, 2]
    >>> tok.decode([0, 3, 4, 2])
    '<|user|>ab<|end|>'
    """

    def __init__(self, chars: list[str], unk: str = UNK):
        if any(s in chars for s in SPECIALS):
            raise ValueError("Pass the ordinary characters only: the role tokens are added in front.")
        self.chars = CharTokenizer(list(chars), unk=unk)
        self.user_id, self.assistant_id, self.end_id = 0, 1, 2
        self.pad_id = self.end_id  # padding is never attended to by real positions nor trained on
        self.unk_id = len(SPECIALS) + self.chars.stoi[unk]

    @classmethod
    def from_text(cls, text: str, max_other: int = 2000) -> ChatTokenizer:
        """Printable ASCII and the newline, the ``max_other`` most frequent other characters of
        ``text``, and :data:`UNK`."""
        ascii_chars = [chr(i) for i in range(32, 127)] + ["\n"]
        known = set(ascii_chars) | {UNK}
        other = Counter({c: n for c, n in Counter(text).items() if c not in known})  # ties: first seen first
        return cls(ascii_chars + sorted(c for c, _ in other.most_common(max_other)) + [UNK])

    @property
    def vocab_size(self) -> int:
        return len(SPECIALS) + self.chars.vocab_size

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; the role token strings become their single ids."""
        ids = []
        for part in _SPECIAL_RE.split(text):
            if part in SPECIALS:
                ids.append(SPECIALS.index(part))
            elif part:
                ids += [i + len(SPECIALS) for i in self.chars.encode(part)]
        return ids

    def encode_tensor(self, text: str) -> torch.Tensor:
        return torch.tensor(self.encode(text), dtype=torch.long)

    def decode(self, ids, skip_special: bool = False) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"Token id {i} out of range 0..{self.vocab_size - 1}.")
            if i < len(SPECIALS):
                out.append("" if skip_special else SPECIALS[i])
            else:
                out.append(self.chars.chars[i - len(SPECIALS)])
        return "".join(out)

    def to_dict(self) -> dict:
        return {"type": "chat", "specials": list(SPECIALS), "chars": self.chars.chars, "unk": self.chars.unk}

    @classmethod
    def from_dict(cls, d: dict) -> ChatTokenizer:
        if d.get("type") != "chat" or list(d.get("specials", [])) != list(SPECIALS):
            raise ValueError(f"Not a chat tokenizer with the role tokens {SPECIALS}: type={d.get('type')!r}.")
        return cls(d["chars"], unk=d["unk"])

    def save(self, path: str | Path) -> None:
        save_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> ChatTokenizer:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError) as err:
            raise ValueError(f"{path} is not a saved ChatTokenizer ({err}).") from err

    def __repr__(self) -> str:
        return f"ChatTokenizer(vocab_size={self.vocab_size})"


def _check_text(text, what: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"The {what} must be a string, got {type(text).__name__}.")
    if _SPECIAL_RE.search(text):
        raise ValueError(f"The {what} contains a role token ({', '.join(SPECIALS)}): remove it.")
    return text


def format_prompt(instruction: str) -> str:
    """The template up to the point where the assistant speaks: ``<|user|>...<|assistant|>``."""
    return USER + _check_text(instruction, "instruction") + ASSISTANT


def format_example(instruction: str, response: str) -> str:
    """A whole training conversation: prompt, response, ``<|end|>``."""
    return format_prompt(instruction) + _check_text(response, "response") + END


def _pair(example) -> tuple[str, str]:
    if isinstance(example, (tuple, list)) and len(example) == 2:
        return example[0], example[1]
    if hasattr(example, "instruction") and hasattr(example, "response"):
        return example.instruction, example.response
    raise TypeError(f"An SFT example is an Example or an (instruction, response) pair, got {example!r:.60}.")


def encode_sft(tok: ChatTokenizer, examples, block_size: int, response_only: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, targets)``, both (N, block_size): the templates right-padded with ``tok.pad_id``, and
    the next tokens, with -100 on padding and, if ``response_only``, on every prompt position."""
    rows, targets = [], []
    for ex in examples:
        instruction, response = _pair(ex)
        prompt = tok.encode(format_prompt(instruction))
        ids = prompt + tok.encode(_check_text(response, "response")) + [tok.end_id]
        if len(ids) - 1 > block_size:
            raise ValueError(f"An example of {len(ids) - 1} tokens does not fit block_size {block_size} "
                             f"({instruction[:40]!r}...): raise block_size or shorten the example.")
        pad = block_size - (len(ids) - 1)
        y = ids[1:]
        if response_only:
            y = [-100] * (len(prompt) - 1) + y[len(prompt) - 1:]  # y[j] predicts ids[j + 1]
        rows.append(ids[:-1] + [tok.pad_id] * pad)
        targets.append(y + [-100] * pad)
    if not rows:
        raise ValueError("encode_sft needs at least one example.")
    return torch.tensor(rows), torch.tensor(targets)


@torch.no_grad()
def replies(model, tok: ChatTokenizer, instructions: list[str], max_new_tokens: int = 96,
            temperature: float = 0.0, top_k: int | None = None, generator: torch.Generator | None = None,
            batch_size: int = 64, allow_unk: bool = False) -> list[str]:
    """The model's reply to each instruction (greedy when ``temperature`` is 0), cut at ``<|end|>``
    (or after ``max_new_tokens`` tokens, or at the model's block size). The unknown-character
    token is never generated unless ``allow_unk``: it stands for 1 of many rare characters, so it is
    often the likeliest single token of a small vocabulary, but it is no text."""
    if isinstance(instructions, str):
        raise TypeError("replies takes a list of instructions; use reply() for one.")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}.")
    block = model.config.block_size
    device = next(model.parameters()).device
    prompts = [tok.encode(format_prompt(x)) for x in instructions]
    too_long = [i for i, p in enumerate(prompts) if len(p) >= block]
    if too_long:
        raise ValueError(f"Instruction {too_long[0]} has {len(prompts[too_long[0]])} tokens: "
                         f"it leaves no room to reply within block_size {block}; shorten it.")
    was_training = model.training
    model.eval()
    out = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths batch together
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        lens = torch.tensor([len(prompts[i]) for i in rows], device=device)  # (B,)
        cap = min(block, int(lens.max()) + max_new_tokens)
        buf = torch.full((len(rows), cap), tok.pad_id, dtype=torch.long, device=device)  # (B, cap)
        for r, i in enumerate(rows):
            buf[r, :len(prompts[i])] = torch.tensor(prompts[i], device=device)
        cur, stop = lens.clone(), lens + max_new_tokens
        done = cur >= stop
        while not done.all():
            width = int(cur[~done].max())
            logits = model(buf[:, :width])  # (B, width, V)
            logits = logits.gather(1, (cur - 1).clamp(max=width - 1)[:, None, None]
                                   .expand(-1, 1, logits.shape[-1]))[:, 0].float()  # (B, V) at each row's end
            if not allow_unk:
                logits[:, tok.unk_id] = float("-inf")
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                probs = F.softmax(filter_logits(logits / temperature, top_k), dim=-1)
                nxt = multinomial(probs, 1, generator)[:, 0]
            live = ~done
            buf[live, cur[live]] = nxt[live]
            cur = cur + live.long()
            done = done | (live & (nxt == tok.end_id)) | (cur >= stop) | (cur >= cap)
        for r, i in enumerate(rows):
            new = buf[r, len(prompts[i]):int(cur[r])].tolist()
            if tok.end_id in new:
                new = new[:new.index(tok.end_id)]
            out[i] = tok.decode(new, skip_special=True)
    model.train(was_training)
    return out


def reply(model, tok: ChatTokenizer, instruction: str, max_new_tokens: int = 96, temperature: float = 0.0,
          generator: torch.Generator | None = None, top_k: int | None = None, allow_unk: bool = False) -> str:
    """The model's reply to one instruction (see :func:`replies`)."""
    return replies(model, tok, [instruction], max_new_tokens, temperature, top_k, generator, allow_unk=allow_unk)[0]


def task_success(model, tok: ChatTokenizer, examples, **kw) -> dict:
    """Share of ``examples`` whose reply succeeds (``tasks.success``), per task and ``"all"``;
    ``kw`` go to :func:`replies` (greedy by default)."""
    from aigc_course.assistant.tasks import success

    answers = replies(model, tok, [e.instruction for e in examples], **kw)
    hits: dict[str, list[bool]] = {}
    for e, a in zip(examples, answers):
        hits.setdefault(e.task, []).append(success(e, a))
    table = {t: sum(v) / len(v) for t, v in sorted(hits.items())}
    table["all"] = sum(sum(v) for v in hits.values()) / max(1, len(examples))
    return table
