"""Record the SHA-256 of each shipped entry's files (weights, tokenizers) in its card.

Usage: python scripts/stamp_weight_hashes.py [--check]

Each card ``src/aigc_course/weights/<name>.json`` gets (or has refreshed) its ``sha256`` field,
``{"<name>.safetensors": "<hex>", "<name>.tokenizer.json": "<hex>", ...}``, placed right after
``train_command``, which :func:`aigc_course.pretrained.load_pretrained` and ``load_tokenizer``
check on load. Every other field, the key order and the formatting (indent 2, UTF-8 characters
as they are, a final newline: what ``save_pretrained`` writes) are kept, so the diff shows only
the hashes. ``save_pretrained`` already stamps the cards it writes; run this after changing a
shipped file by other means. ``--check`` changes nothing and exits 1 if a card is missing or
out of date.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from aigc_course.data.download import sha256sum
from aigc_course.pretrained import card_with_hashes, entry_files

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "aigc_course" / "weights"


def dump(card: dict) -> str:
    return json.dumps(card, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale cards, write nothing")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="folder of the cards")
    args = parser.parse_args(argv)
    stale = 0
    for card_path in sorted(args.weights.glob("*.json")):
        if card_path.name.endswith(".tokenizer.json"):
            continue
        text = card_path.read_text(encoding="utf-8")
        card = json.loads(text)
        if dump(card) != text:
            raise SystemExit(f"{card_path} is not in the format save_pretrained writes; "
                             "rewriting it would change more than its hashes.")
        files = entry_files(args.weights, card_path.stem)
        if not any(p.suffix == ".safetensors" for p in files):
            raise SystemExit(f"{card_path}: no {card_path.stem}.safetensors next to it.")
        new = dump(card_with_hashes(card, {p.name: sha256sum(p) for p in files}))
        if new == text:
            print(f"{card_path.name}: up to date")
            continue
        stale += 1
        if args.check:
            print(f"{card_path.name}: hashes missing or out of date")
            continue
        tmp = card_path.with_name(card_path.name + ".tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(card_path)
        print(f"{card_path.name}: stamped {', '.join(p.name for p in files)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
