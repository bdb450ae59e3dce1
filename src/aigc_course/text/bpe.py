"""Byte-level byte-pair encoding (BPE), written from scratch for teaching.

Taught in part 3, "3.4 The language-model pipeline and the AIGC system workflow". BPE (Gage,
1994; Sennrich et al., 2016) starts from a small alphabet and repeatedly adds the most frequent
pair of adjacent symbols as a new symbol. GPT-2 (Radford et al., 2019) runs it on *bytes*, so
every string can be encoded (no unknown token) and ``decode(encode(x)) == x`` always holds.

Training, in numbered steps (the book's text uses the same numbers):

1. pre-tokenize: split the text into chunks with a GPT-2-style regular expression (a word with
   its leading space, a number, a run of punctuation, whitespace); merges never cross chunks;
2. count how often each distinct chunk occurs and write it as a list of byte ids;
3. count every adjacent pair of ids, weighted by the chunk's frequency;
4. pick the most frequent pair (ties: the smallest pair of ids), give the concatenated bytes a
   new id, and replace the pair everywhere; only the chunks that contain it change;
5. repeat 3-4 until the vocabulary has ``vocab_size`` tokens or the best pair is rarer than
   ``min_frequency``.

Agreement with Hugging Face ``tokenizers``: the 256 byte tokens are numbered as in GPT-2's
vocabulary (printable bytes first, ``"!"`` = 0, the space byte = 220), which is also the order
``BpeTrainer`` gives them, and ties are broken the way ``BpeTrainer`` does (larger count first,
then the smaller pair of ids). With ``hf_reference_tokenizer`` (a ``ByteLevel`` pre-tokenizer
and ``BpeTrainer(vocab_size, min_frequency, initial_alphabet=ByteLevel.alphabet())``) the learned
merges and the token ids are identical; ``tests/test_bpe.py`` checks it on Shakespeare and on
Chinese text. Our regular expression uses Python's ``re`` (no ``\\p{L}`` classes): it equals
GPT-2's on text without combining marks and without non-decimal numerals such as "²".
"""

from __future__ import annotations

import heapq
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from aigc_course.text.tokenizers import save_json

# GPT-2's split: contractions, " ?letters", " ?digits", " ?other symbols", trailing spaces, spaces.
# [^\W\d_] = letters; \d = digits; (?:[^\s\w]|_) = neither letter, digit nor space.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 bytes to printable characters (used to *show* byte tokens).

    Printable bytes map to themselves; the 68 others (space, control bytes, ...) to the
    characters from U+0100 on, so the space byte is shown as "Ġ" (U+0120).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


# Byte -> base token id: sorted by the printable stand-in, so "!" = 0 and " " = 220 (as in GPT-2).
_BYTE_CHARS = bytes_to_unicode()
BYTE_ORDER = sorted(range(256), key=lambda b: _BYTE_CHARS[b])  # BYTE_ORDER[id] = byte value
BYTE_TO_ID = {b: i for i, b in enumerate(BYTE_ORDER)}


def word_tokenize(text: str) -> list[str]:
    """Split into words and single punctuation marks: "Don't stop!" -> Don ' t stop !."""
    return re.findall(r"\w+|[^\w\s]", text)


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, scanning left to right."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _pairs(ids: list[int]) -> Counter:
    return Counter(zip(ids, ids[1:]))


class BPETokenizer:
    """A byte-level BPE tokenizer: ``merges[r] = (a, b)`` makes token ``256 + ...`` of rank ``r``.

    >>> tok = BPETokenizer.train(["low lower lowest " * 20], vocab_size=260)
    >>> tok.decode(tok.encode("lowest lows"))
    'lowest lows'
    """

    def __init__(self, merges: Iterable[tuple[int, int]] = (), pattern: str = GPT2_PATTERN):
        self.pattern = pattern
        self._split = re.compile(pattern)
        self.vocab: list[bytes] = [bytes([b]) for b in BYTE_ORDER]  # id -> bytes
        self.merges: list[tuple[int, int]] = []
        self._rank: dict[tuple[int, int], tuple[int, int]] = {}  # pair -> (rank, new id)
        self._cache: dict[str, list[int]] = {}
        ids = {v: i for i, v in enumerate(self.vocab)}
        for a, b in merges:
            a, b = int(a), int(b)
            if not (0 <= a < len(self.vocab) and 0 <= b < len(self.vocab)):
                raise ValueError(f"Merge ({a}, {b}) uses an id not yet in the vocabulary "
                                 f"(size {len(self.vocab)}): merges must be listed in training order.")
            new = self.vocab[a] + self.vocab[b]
            if new not in ids:  # two merge paths can build the same bytes: one id (as in HF)
                ids[new] = len(self.vocab)
                self.vocab.append(new)
            self._rank[(a, b)] = (len(self.merges), ids[new])
            self.merges.append((a, b))

    # ----------------------------------------------------------------------- training
    @classmethod
    def train(cls, texts: str | Iterable[str], vocab_size: int, min_frequency: int = 2,
              pattern: str = GPT2_PATTERN) -> BPETokenizer:
        """Learn merges on ``texts`` until the vocabulary has ``vocab_size`` tokens (steps 1-5)."""
        if vocab_size < 256:
            raise ValueError(f"vocab_size={vocab_size} < 256: a byte-level BPE starts with 256 "
                             "byte tokens; ask for 256 + the number of merges you want.")
        if min_frequency < 1:
            raise ValueError(f"min_frequency must be >= 1, got {min_frequency}.")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts or not any(texts):
            raise ValueError("texts is empty: give at least one non-empty string to train on.")
        splitter = re.compile(pattern)
        # 1-2. pre-tokenize and count the distinct chunks, each as a list of byte ids
        chunk_counts = Counter(c for t in texts for c in splitter.findall(t))
        words = [[BYTE_TO_ID[b] for b in c.encode("utf-8")] for c in chunk_counts]
        freqs = list(chunk_counts.values())
        # 3. pair counts, and which words contain each pair
        counts: dict[tuple[int, int], int] = defaultdict(int)
        where: dict[tuple[int, int], set[int]] = defaultdict(set)
        for w, (ids, f) in enumerate(zip(words, freqs)):
            for p, k in _pairs(ids).items():
                counts[p] += k * f
                where[p].add(w)
        # a max-heap by (count, then smaller ids); stale entries are fixed when popped
        heap = [(-c, p) for p, c in counts.items()]
        heapq.heapify(heap)
        tok = cls(pattern=pattern)
        ids_of = {v: i for i, v in enumerate(tok.vocab)}
        while len(tok.vocab) < vocab_size and heap:
            neg, pair = heapq.heappop(heap)
            if -neg != counts[pair]:  # the count dropped since this entry was pushed
                if counts[pair] > 0:
                    heapq.heappush(heap, (-counts[pair], pair))
                continue
            if -neg < min_frequency:
                break
            # 4. a new token for the pair, then rewrite only the words that contain it
            new_bytes = tok.vocab[pair[0]] + tok.vocab[pair[1]]
            if new_bytes not in ids_of:
                ids_of[new_bytes] = len(tok.vocab)
                tok.vocab.append(new_bytes)
            new_id = ids_of[new_bytes]
            tok._rank[pair] = (len(tok.merges), new_id)
            tok.merges.append(pair)
            changed = set()
            for w in where.pop(pair):
                old = words[w]
                new = _merge(old, pair, new_id)
                if len(new) == len(old):
                    continue  # a stale entry of `where`: the pair left this word earlier
                for p, k in _pairs(old).items():
                    counts[p] -= k * freqs[w]
                for p, k in _pairs(new).items():
                    counts[p] += k * freqs[w]
                    where[p].add(w)
                    changed.add(p)
                words[w] = new
            counts[pair] = 0
            for p in changed:  # push the pairs that appeared (old pairs only ever decrease)
                if counts[p] > 0:
                    heapq.heappush(heap, (-counts[p], p))
        return tok

    # ------------------------------------------------------------------- encode / decode
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _encode_chunk(self, chunk: str) -> list[int]:
        if chunk in self._cache:
            return self._cache[chunk]
        ids = [BYTE_TO_ID[b] for b in chunk.encode("utf-8")]
        while len(ids) > 1:
            # apply the earliest-learned merge present in the chunk, everywhere in the chunk
            ranked = [self._rank[p] for p in zip(ids, ids[1:]) if p in self._rank]
            if not ranked:
                break
            rank, new_id = min(ranked)
            ids = _merge(ids, self.merges[rank], new_id)
        if len(self._cache) < 100_000:
            self._cache[chunk] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Text -> token ids; works for any string (unseen characters fall back to bytes)."""
        if not isinstance(text, str):
            raise ValueError(f"encode expects a str, got {type(text).__name__}.")
        return [i for chunk in self._split.findall(text) for i in self._encode_chunk(chunk)]

    def decode(self, ids) -> str:
        """Token ids -> text. Bytes that do not form valid UTF-8 (a cut character) show as '�'."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        try:
            data = b"".join(self.vocab[i] for i in ids)
        except (IndexError, TypeError):
            raise ValueError(f"Token ids must be integers in 0..{self.vocab_size - 1}.") from None
        return data.decode("utf-8", errors="replace")

    def tokens(self, text: str) -> list[str]:
        """The pieces ``text`` is cut into, as strings (a piece may be part of a character)."""
        return [self.vocab[i].decode("utf-8", errors="replace") for i in self.encode(text)]

    def merge_strings(self, n: int | None = None) -> list[tuple[str, str]]:
        """The first ``n`` merges as readable string pairs, e.g. (' t', 'he')."""
        show = lambda i: self.vocab[i].decode("utf-8", errors="replace")  # noqa: E731
        return [(show(a), show(b)) for a, b in self.merges[:n]]

    def hf_merges(self) -> list[tuple[str, str]]:
        """The merges in Hugging Face's byte-level spelling (a space shown as "Ġ")."""
        show = lambda i: "".join(_BYTE_CHARS[b] for b in self.vocab[i])  # noqa: E731
        return [(show(a), show(b)) for a, b in self.merges]

    # ------------------------------------------------------------------------ save / load
    def to_dict(self) -> dict:
        return {"type": "bpe", "pattern": self.pattern, "merges": [list(m) for m in self.merges]}

    @classmethod
    def from_dict(cls, d: dict) -> BPETokenizer:
        if d.get("type") != "bpe":
            raise ValueError(f"Not a BPE tokenizer: type={d.get('type')!r}.")
        return cls([tuple(m) for m in d["merges"]], pattern=d.get("pattern", GPT2_PATTERN))

    def save(self, path: str | Path) -> None:
        save_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, KeyError) as err:
            raise ValueError(f"{path} is not a saved BPETokenizer ({err}).") from err

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"


def hf_reference_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
    """The same training done by Hugging Face ``tokenizers`` (for checking; needs the library)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok
