"""What a run scores: the text of each plugin's output, and sacrebleu's figures for it."""

from __future__ import annotations

from atelier_platform.evaluation import metrics
from atelier_platform.evaluation.services import OUTPUT_TEXT


def test_a_reference_equal_to_the_answer_scores_100_and_an_unrelated_one_little():
    assert metrics.sentence_chrf("Your parcel left the depot today.", "Your parcel left the depot today.") == 100.0
    assert metrics.sentence_chrf("Your parcel left the depot today.", "Quartz vexing jumbo 0987") < 15
    same = metrics.corpus_scores(["a b c d e", "the cat sat on the mat"], ["a b c d e", "the cat sat on the mat"])
    assert same == {"bleu": 100.0, "chrf": 100.0, "bleu_tokenize": "13a"}
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


def test_bleu_of_chinese_answers_is_counted_by_character_not_as_one_word_a_sentence():
    """13a splits on spaces and punctuation: a Chinese sentence was one word, so a close answer scored 0."""
    close = metrics.corpus_scores(["您的包裹正在运送途中。"], ["您的包裹已在路上。"])
    assert close["bleu_tokenize"] == "zh" and close["bleu"] > 10
    assert metrics.corpus_scores(["与此无关的回答。"], ["您的包裹已在路上。"])["bleu"] < close["bleu"]
    english = metrics.corpus_scores(["The parcel is on its way."], ["Your parcel is on its way."])
    assert english["bleu_tokenize"] == "13a" and english["bleu"] > 50
    assert metrics.bleu_tokenize(["お荷物は配送中です。"]) == "char" and metrics.bleu_tokenize(["배송 중입니다"]) == "char"
