"""Folk tunes in ABC notation: the corpus, the checks and a tiny synthesiser of chapter 6.2.

Taught in chapter 6.2 ("Games and entertainment"). The tunes are the ABC files that ship inside
the ``music21`` package (no download): the Essen folksong collection and the 1,850 tunes of
O'Neill's *Music of Ireland* (folder ``oneills1850``). A tune is kept as its three musical header fields and its body::

    M:6/8          metre
    L:1/8          unit note length
    K:G            key
    d2d def|e2d c2A|...

1. :func:`load_abc_tunes` splits the files into tunes and cleans them (ornaments, chord names,
   slurs and line continuations removed; tunes without a metre or with rare symbols dropped);
2. a character GPT learns the text (recipe ``gpt_abc``), prompted with a header it writes a tune;
3. :func:`check_tune` parses a tune back with music21 and checks that the key music21 hears
   (Krumhansl-Schmuckler profile matching with Aarden-Essen weights, music21's default) is the
   header's key, and that the bars last as long
   as the metre says;
4. :func:`synthesize` renders the notes with a small additive synthesiser for listening.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import numpy as np

SOURCES = ("essenFolksong", "oneills1850")
HEADER_RE = re.compile(r"^M:(?P<M>[^\n]+)\nL:(?P<L>[^\n]+)\nK:(?P<K>[^\n]+)\n")
KEY_RE = re.compile(r"^([A-G][b#]?)(m|min|maj|mix|dor)?$")
METRES = {"2/4", "3/4", "4/4", "6/8", "3/8", "9/8", "2/2", "C", "C|", "6/4", "3/2", "4/2"}
BODY_CHARS = set("ABCDEFGabcdefgz0123456789/,'^_=|:[]()<>- \n")
SEPARATOR = "\n\n"


# ---------------------------------------------------------------- the corpus
def abc_paths(sources: tuple[str, ...] = SOURCES) -> list:
    """Paths of the ABC files bundled with music21 from the given collections, sorted."""
    try:
        from music21 import corpus
    except ImportError as err:
        raise ImportError("The folk-tune corpus ships with music21: `pip install music21`.") from err
    paths = [p for p in corpus.getPaths(fileExtensions=["abc"]) if any(s in str(p) for s in sources)]
    if not paths:
        raise FileNotFoundError(f"music21's corpus has no ABC files from {sources}.")
    return sorted(paths, key=str)


def clean_body(body: str) -> str:
    """Drop what the model need not learn: chord names and annotations ("..."), grace notes
    ({...}), decorations (!...!, ~ . T H u v), slurs (but not tuplets such as (3), line breaks
    escaped with a backslash, and repeated spaces."""
    body = body.replace("\\\n", " ")
    body = re.sub(r'"[^"]*"|\{[^}]*\}|![^!]*!', "", body)
    body = re.sub(r"\((?!\d)|\)|[~.THuv]", "", body)
    lines = [re.sub(r" +", " ", line).strip() for line in body.split("\n")]
    return "\n".join(line for line in lines if line)


def split_tunes(text: str) -> list[dict]:
    """Split the text of one ABC file into tunes: dicts with ``M``, ``L``, ``K`` and ``body``."""
    tunes = []
    for chunk in re.split(r"\n(?=X:)", "\n" + text.replace("\r", "")):
        if not chunk.startswith("X:"):
            continue
        fields, body = {}, []
        for line in chunk.split("\n")[1:]:
            m = re.match(r"^([A-Za-z]):\s*(.*)$", line)
            if m and not body and m.group(1) != "|":
                fields.setdefault(m.group(1), m.group(2).strip())
                continue
            if "K" in fields:  # the body starts after the key line
                body.append(line)
        if "K" in fields:
            tunes.append({"M": fields.get("M", ""), "L": fields.get("L", "1/8"), "K": fields["K"],
                          "body": "\n".join(body)})
    return tunes


def tune_text(tune: dict) -> str:
    """A tune as the model sees it: the three header lines and the body."""
    return f"M:{tune['M']}\nL:{tune['L']}\nK:{tune['K']}\n{tune['body']}"


def load_abc_tunes(sources: tuple[str, ...] = SOURCES, max_chars: int = 600) -> list[str]:
    """The cleaned tunes of music21's bundled ABC collections, as texts (see :func:`tune_text`).

    Kept: a common metre, a key such as ``G``, ``Em`` or ``Dmix``, a body of at most ``max_chars``
    characters that uses only the symbols in ``BODY_CHARS``. The files are read as Latin-1.
    """
    texts = []
    for path in abc_paths(sources):
        for tune in split_tunes(path.read_text(encoding="latin-1")):
            tune = {**tune, "M": tune["M"].replace(" ", ""), "K": tune["K"].replace(" ", ""),
                    "body": clean_body(tune["body"])}
            if (tune["M"] in METRES and KEY_RE.match(tune["K"]) and 20 <= len(tune["body"]) <= max_chars
                    and set(tune["body"]) <= BODY_CHARS):
                texts.append(tune_text(tune))
    return texts


def split_train_val(tunes: list[str], val_fraction: float = 0.05, seed: int = 0) -> tuple[list[str], list[str]]:
    """A seeded shuffle, then the last ``val_fraction`` of the tunes held out."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    order = list(range(len(tunes)))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(len(tunes) * val_fraction))
    return [tunes[i] for i in order[:-n_val]], [tunes[i] for i in order[-n_val:]]


def corpus_text(tunes: list[str]) -> str:
    """The training text: every tune followed by a blank line."""
    return "".join(t + SEPARATOR for t in tunes)


def first_tune(text: str) -> str:
    """The first tune of a generated text (everything before its first blank line)."""
    return text.split(SEPARATOR)[0].strip("\n")


def header_prompt(metre: str, key: str, unit: str = "1/8") -> str:
    """The prompt that asks the model for a tune in ``metre`` and ``key``."""
    return f"{SEPARATOR}M:{metre}\nL:{unit}\nK:{key}\n"


# ---------------------------------------------------------------- parsing and checking
@dataclass
class TuneCheck:
    """What :func:`check_tune` found (``parsed`` False: the other fields keep their defaults)."""

    parsed: bool = False
    n_notes: int = 0
    key_header: str = ""
    key_heard: str = ""
    key_match: bool = False  # tonic and mode as the header says
    tonic_match: bool = False  # the tonic only (Essen's K: fields give the signature, not the mode)
    bars: int = 0
    full_bars: int = 0  # inner bars (not the first or last) that last exactly one bar of the metre
    error: str = ""

    @property
    def metre_share(self) -> float:
        return self.full_bars / self.bars if self.bars else 0.0


def header_key(k: str) -> tuple[str, str]:
    """(tonic, mode) of a K: field, e.g. "Em" -> ("E", "minor"), "Bb" -> ("B-", "major")."""
    m = KEY_RE.match(k)
    if not m:
        raise ValueError(f"Unknown key {k!r}: use a tonic A-G, optional b/#, optional m/mix/dor.")
    tonic = m.group(1).replace("b", "-") if len(m.group(1)) > 1 else m.group(1)
    mode = {None: "major", "maj": "major", "m": "minor", "min": "minor", "mix": "mixolydian",
            "dor": "dorian"}[m.group(2)]
    return tonic, mode


def parse_tune(text: str):
    """Parse one tune (the course's text form) with music21; returns a ``Score``."""
    from music21 import converter

    return converter.parse("X:1\n" + text.strip() + "\n", format="abc")


def check_tune(text: str) -> TuneCheck:
    """Parse ``text`` and check its key and its bars against its own header."""
    out = TuneCheck()
    head = HEADER_RE.match(text)
    if head is None:
        out.error = "no M:/L:/K: header"
        return out
    strange = sorted(set(text[head.end():]) - BODY_CHARS)
    if strange or not KEY_RE.match(head["K"].strip()):  # cheap checks first: music21 is slow on junk
        out.error = f"symbols outside the ABC subset: {''.join(strange)!r}" if strange else "unknown key"
        return out
    try:
        score = parse_tune(text)
        part = score.parts[0] if score.parts else score
        notes = list(part.flatten().notes)
        if len(notes) < 4:
            raise ValueError("fewer than 4 notes")
        heard = score.analyze("key")
    except Exception as err:  # music21 raises many kinds of errors on broken ABC
        out.error = f"{type(err).__name__}: {str(err)[:60]}"
        return out
    out.parsed, out.n_notes = True, len(notes)
    tonic, mode = header_key(head["K"].strip())
    out.key_header, out.key_heard = f"{tonic} {mode}", f"{heard.tonic.name} {heard.mode}"
    # the analyser knows major and minor only: a modal tune counts when its tonic is heard
    out.tonic_match = heard.tonic.name == tonic
    out.key_match = out.tonic_match and (heard.mode == mode or mode not in ("major", "minor"))
    measures = list(part.getElementsByClass("Measure"))
    ts = part.recurse().getElementsByClass("TimeSignature").first()
    if ts is not None and len(measures) > 2:
        inner = measures[1:-1]  # the first may be a pick-up, the last its complement
        out.bars = len(inner)
        out.full_bars = sum(abs(m.duration.quarterLength - ts.barDuration.quarterLength) < 1e-6 for m in inner)
    return out


def summarize_checks(checks: list[TuneCheck]) -> dict:
    """Shares over tunes: parsed, key match (among parsed), inner bars of the right length."""
    parsed = [c for c in checks if c.parsed]
    bars = sum(c.bars for c in parsed)
    return {"n": len(checks), "parsed": len(parsed) / max(1, len(checks)),
            "key_match": sum(c.key_match for c in parsed) / max(1, len(parsed)),
            "tonic_match": sum(c.tonic_match for c in parsed) / max(1, len(parsed)),
            "metre_bars": sum(c.full_bars for c in parsed) / max(1, bars)}


# ---------------------------------------------------------------- listening and looking
def note_events(score, bpm: float = 120.0) -> list[tuple[float, float, float, int]]:
    """(start s, duration s, frequency Hz, MIDI pitch) of every note of ``score`` (chords: each pitch)."""
    part = score.parts[0] if score.parts else score
    spq = 60.0 / bpm  # seconds per quarter note
    events = []
    for n in part.flatten().notes:
        for p in getattr(n, "pitches", [n.pitch]):
            events.append((float(n.offset) * spq, float(n.quarterLength) * spq, float(p.frequency), int(p.midi)))
    return events


def synthesize(events, rate: int = 8000, seconds: float | None = None, attack: float = 0.01,
               release: float = 0.08) -> np.ndarray:
    """Render note ``events`` to a mono waveform in [-1, 1] (float32, ``rate`` samples per second).

    Each note is a sine plus a quieter triangle an octave up, shaped by an envelope that rises
    linearly over ``attack`` seconds, decays exponentially, and fades out over the last
    ``release`` seconds of the note (so that repeated notes do not click).
    """
    if rate < 1000 or rate > 48000:
        raise ValueError(f"rate must be between 1000 and 48000 Hz, got {rate}.")
    end = max((s + d for s, d, _, _ in events), default=0.0)
    total = end if seconds is None else min(end, seconds)
    wave = np.zeros(int(total * rate) + 1, dtype=np.float64)
    for start, dur, freq, _ in events:
        i0 = int(start * rate)
        n = min(int(dur * rate), len(wave) - i0)
        if n <= 0:
            continue
        t = np.arange(n) / rate
        tri = 2 * np.abs(2 * ((2 * freq * t) % 1.0) - 1) - 1  # triangle wave at 2f
        tone = np.sin(2 * np.pi * freq * t) + 0.3 * tri
        env = np.minimum(1.0, t / attack) * np.exp(-2.0 * t) * np.clip((dur - t) / release, 0.0, 1.0)
        wave[i0:i0 + n] += tone * env
    peak = np.abs(wave).max()
    return (wave / peak * 0.9 if peak > 0 else wave).astype(np.float32)


def piano_roll(events, ax, title: str | None = None, colour=None) -> None:
    """Draw note ``events`` as horizontal bars: time (s) across, MIDI pitch up."""
    for start, dur, _, midi in events:
        ax.broken_barh([(start, dur * 0.95)], (midi - 0.4, 0.8), color=colour)
    if events:
        lo, hi = min(e[3] for e in events), max(e[3] for e in events)
        ax.set_ylim(lo - 2, hi + 2)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title, fontsize=10)
