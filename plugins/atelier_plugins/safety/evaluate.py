"""Precision and recall of the built-in text checks on the labelled set in ``eval_data/``.

    python -m atelier_plugins.safety.evaluate [--errors]

Every text check runs on every text with the default threshold: a finding with score >= 0.5
is a positive for its category. The set has English and Chinese, harmful and benign text, with
benign text that looks harmful and obfuscated harmful text; ``eval_data/terms.txt`` is the
project blocklist the ``blocklist`` check uses (category ``custom``). Prints a table, then one
JSON line with the same numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from atelier_sdk.safety import Category, ScreenContext
from atelier_plugins.safety.blocklist import BlocklistCheck, load_terms_file
from atelier_plugins.safety.personal_data import PersonalDataCheck
from atelier_plugins.safety.profanity import ProfanityCheck
from atelier_plugins.safety.prompt_injection import PromptInjectionCheck

THRESHOLD = 0.5


def eval_dir() -> Path:
    return Path(str(resources.files("atelier_plugins.safety").joinpath("eval_data")))


def load_examples(path: Path | None = None) -> list[dict]:
    path = path or eval_dir() / "texts.jsonl"
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def predict(texts: list[str], context: ScreenContext) -> list[set[str]]:
    """Categories with a finding at or above the threshold, per text, over all text checks."""
    predicted: list[set[str]] = [set() for _ in texts]
    for check in (BlocklistCheck(), ProfanityCheck(), PersonalDataCheck(), PromptInjectionCheck()):
        check.load()
        for index, findings in enumerate(check.check_texts(texts, context)):
            predicted[index].update(f.category.value for f in findings if f.score >= THRESHOLD)
    return predicted


def score(examples: list[dict], predicted: list[set[str]]) -> dict[str, dict[str, float]]:
    categories = sorted({c for e in examples for c in e["labels"]} | {c for p in predicted for c in p})
    table = {}
    for category in categories:
        tp = sum(1 for e, p in zip(examples, predicted) if category in p and category in e["labels"])
        fp = sum(1 for e, p in zip(examples, predicted) if category in p and category not in e["labels"])
        fn = sum(1 for e, p in zip(examples, predicted) if category not in p and category in e["labels"])
        table[category] = {
            "precision": round(tp / (tp + fp), 3) if tp + fp else 0.0,
            "recall": round(tp / (tp + fn), 3) if tp + fn else 0.0,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "support": tp + fn,
        }
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--errors", action="store_true", help="list every false positive and false negative")
    args = parser.parse_args(argv)
    examples = load_examples()
    terms = load_terms_file(eval_dir() / "terms.txt", default_category=Category.CUSTOM)
    context = ScreenContext(blocklist=tuple(terms))
    predicted = predict([e["text"] for e in examples], context)
    table = score(examples, predicted)
    benign = [p for e, p in zip(examples, predicted) if not e["labels"]]
    print(f"{len(examples)} texts ({sum(e['lang'] == 'en' for e in examples)} en, "
          f"{sum(e['lang'] == 'zh' for e in examples)} zh), {len(benign)} benign; positive = score >= {THRESHOLD}")
    print(f"{'category':<18} {'precision':>9} {'recall':>7} {'tp':>4} {'fp':>4} {'fn':>4} {'support':>8}")
    for category, row in table.items():
        print(f"{category:<18} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['tp']:>4} {row['fp']:>4} {row['fn']:>4} {row['support']:>8}")
    flagged_benign = sum(1 for p in benign if p)
    print(f"benign texts with any positive: {flagged_benign} of {len(benign)}")
    if args.errors:
        for example, got in zip(examples, predicted):
            expected = set(example["labels"])
            if got != expected:
                print(f"  expected {sorted(expected)} got {sorted(got)}: {example['text']!r}")
    print(json.dumps({"threshold": THRESHOLD, "texts": len(examples), "benign_flagged": flagged_benign,
                      "categories": table}, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
