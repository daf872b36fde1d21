"""The evaluation set is well formed, and the evaluation runs end to end."""

from __future__ import annotations

import json

from atelier_sdk.safety import Category

from atelier_plugins.safety import evaluate


def test_eval_set_is_large_labelled_and_bilingual():
    examples = evaluate.load_examples()
    assert len(examples) >= 120
    assert {e["lang"] for e in examples} == {"en", "zh"}
    assert all(set(e) == {"text", "lang", "labels"} for e in examples)
    assert all(Category(label) for e in examples for label in e["labels"])
    assert sum(1 for e in examples if not e["labels"]) >= 40
    assert (evaluate.eval_dir() / "terms.txt").exists()


def test_evaluate_main_prints_a_table_and_a_json_line(capsys):
    assert evaluate.main([]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].split()[:3] == ["category", "precision", "recall"]
    result = json.loads(lines[-1])
    assert set(result["categories"]) >= {"custom", "harassment", "personal_data", "prompt_injection"}
    for row in result["categories"].values():
        assert 0.0 <= row["precision"] <= 1.0 and 0.0 <= row["recall"] <= 1.0
