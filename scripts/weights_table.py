"""Print the Markdown table of the shipped weights (for book/setup.md) from their cards.

Usage: python scripts/weights_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "aigc_course" / "weights"
SKIP = {"unit", "estimate", "n_test"}


def fmt_metrics(metrics: dict) -> str:
    parts = []
    for key, value in metrics.items():
        if key in SKIP or isinstance(value, (dict, list)):
            continue
        parts.append(f"{key.replace('_', ' ')} {value}")
    return ", ".join(parts)


def main() -> None:
    print("| name | model | metrics (held-out data) | training time | size | retrain |")
    print("| --- | --- | --- | --- | --- | --- |")
    for card_path in sorted(WEIGHTS.glob("*.json")):
        if card_path.name.endswith(".tokenizer.json"):
            continue
        card = json.loads(card_path.read_text(encoding="utf-8"))
        name = card_path.stem
        size = sum(p.stat().st_size for p in WEIGHTS.glob(f"{name}.*")) / 1e6
        params = card.get("parameters")
        model = f"{card['arch']}, {params / 1e6:.2f} M parameters" if params else card["arch"]
        print(f"| `{name}` | {model} | {fmt_metrics(card['metrics'])} | {card['train_seconds']:.0f} s, "
              f"{card['device']} | {size:.1f} MB | `{card['train_command']}` |")


if __name__ == "__main__":
    main()
