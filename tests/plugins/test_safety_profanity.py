"""The profanity check (alt-profanity-check's model): English positives with word evidence, negatives, Chinese skipped."""

from __future__ import annotations

import pytest
from atelier_sdk.safety import Category, ScreenContext

from atelier_plugins.safety.profanity import ProfanityCheck


@pytest.fixture(scope="module")
def check():
    loaded = ProfanityCheck()
    loaded.load()
    return loaded


def scores(check, text):
    return {f.category: f for f in check.check_text(text, ScreenContext())}


def test_english_insult_is_harassment_with_the_offending_words(check):
    text = "you are a fucking idiot"
    found = scores(check, text)
    assert found[Category.HARASSMENT].score >= 0.9
    assert {text[e.start : e.end] for e in found[Category.HARASSMENT].evidence} == {"fucking", "idiot"}
    assert Category.HATE not in found


def test_obfuscated_insult_is_scored_and_mapped_back(check):
    text = "you f.u.c.k.i.n.g 1d10t"
    found = scores(check, text)[Category.HARASSMENT]
    assert found.score >= 0.9
    assert {text[e.start : e.end] for e in found.evidence} == {"f.u.c.k.i.n.g", "1d10t"}


def test_abuse_naming_a_protected_group_is_also_hate(check):
    found = scores(check, "immigrants are filthy scum")
    assert found[Category.HATE].score >= 0.5
    assert any(e.excerpt == "immigrants" for e in found[Category.HATE].evidence)


@pytest.mark.parametrize(
    "text",
    ["kill the process", "shoot a photo", "breast cancer screening", "Scunthorpe United won", "Women engineers designed it"],
)
def test_benign_english_stays_below_half(check, text):
    assert all(f.score < 0.5 for f in check.check_text(text, ScreenContext()))


def test_chinese_text_gets_no_finding(check):
    assert check.check_texts(["你就是个傻逼", "这款面霜很温和"], ScreenContext()) == [[], []]


def test_fast_scorer_gives_sklearn_probabilities_on_the_labelled_set(check):
    """The one-product scorer must be the package model's own maths, not an approximation."""
    import numpy as np
    from profanity_check import profanity_check as library

    from atelier_plugins.safety.evaluate import load_examples
    from atelier_plugins.safety.profanity import _LinearSigmoidEnsemble

    assert isinstance(check._model, _LinearSigmoidEnsemble)
    texts = [example["text"] for example in load_examples()] + ["you are a fucking idiot", "Where is my parcel?"]
    features = library.vectorizer.transform(texts)
    expected = library.model.predict_proba(features)
    assert np.allclose(check._model.predict_proba(features), expected, rtol=0, atol=1e-12)
    assert expected[:, 1].max() > 0.9 and expected[:, 1].min() < 0.1  # the set has both kinds


def test_unfamiliar_model_shape_keeps_sklearns_own_path():
    from sklearn.linear_model import LogisticRegression

    from atelier_plugins.safety.profanity import _LinearSigmoidEnsemble

    assert _LinearSigmoidEnsemble.of(LogisticRegression()) is None


@pytest.mark.timeout(60, method="signal")  # the check: one 150,000-letter word took minutes before, now milliseconds
def test_one_long_word_is_screened_in_one_pass(check):
    """The leet reading looked for a leet character from every start of a word that had none: quadratic in
    the word's length (6 s for 40,000 letters), inside the web request that screens a job's input."""
    assert check.check_texts(["A" * 150_000 + "==="], ScreenContext()) == [[]]
    assert {f.category for f in check.check_text("you are a fuck1ng " + "a" * 10_000, ScreenContext())}  # leet still read
