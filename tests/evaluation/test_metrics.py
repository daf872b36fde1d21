"""What a run scores: the text of each plugin's output, and sacrebleu's figures for it."""

from __future__ import annotations

from atelier_platform.evaluation import metrics
from atelier_platform.evaluation.services import OUTPUT_TEXT


def test_a_reference_equal_to_the_answer_scores_100_and_an_unrelated_one_little():
    assert metrics.sentence_chrf("Your parcel left the depot today.", "Your parcel left the depot today.") == 100.0
    assert metrics.sentence_chrf("Your parcel left the depot today.", "Quartz vexing jumbo 0987") < 15
    same = metrics.corpus_scores(["a b c d e", "the cat sat on the mat"], ["a b c d e", "the cat sat on the mat"])
    assert same == {"bleu": 100.0, "chrf": 100.0}
    assert metrics.corpus_scores([], []) == {"bleu": None, "chrf": None}


def test_the_text_scored_for_each_evaluable_plugin():
    assert OUTPUT_TEXT["chatbot"]({"reply": "Fourteen days.", "sources": []}) == "Fourteen days."
    recommended = {"recommendations": [
        {"rank": 2, "item_id": "b", "title": "B", "score": 0.5, "copy": [{"text": "Second item copy"}]},
        {"rank": 1, "item_id": "a", "title": "A", "score": 0.9, "copy": [{"text": "First item copy"}, {"text": "alt"}]},
        {"rank": 3, "item_id": "c", "title": "C", "score": 0.1, "copy": []},
    ]}
    assert OUTPUT_TEXT["recommender_copy"](recommended) == "First item copy\nSecond item copy"
    assert set(OUTPUT_TEXT) == {"chatbot", "recommender_copy"}  # the image plugin is not scored (yet)
