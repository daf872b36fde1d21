"""The ``profanity`` check: English offensive language, scored by alt-profanity-check's linear model.

The model (a TF-IDF vectorizer and a calibrated linear SVM, trained on offensive-language and
toxic-comment data) gives the probability that a text is offensive; that is the ``harassment``
score. Evidence is the words the same model scores as offensive on their own (word-level
prediction), so a reviewer sees which words drove the score.

``hate``: the model does not tell hate from insult. We report ``hate`` with the same score only
when the offensive text also names a group protected by the usual hate-speech definitions
(religion, ethnicity, nationality, gender, sexual orientation, disability): abuse aimed at a
group is what separates hate from harassment. It is a heuristic and is labelled as such in
the evidence.

Allowed words are not counted against a text: the project's allow list (``ScreenContext.allowed_terms``) and
the everyday words this model is known to misread on their own (``data/profanity_false_positives.txt``: "wool"
scores 0.62 alone, so a scarf's copy read as an insult). Their characters are blanked out before the text is
scored and the rest is scored as usual, so "wool" next to an insult still scores as the insult does; the
model's features are single words (unigram TF-IDF), so a blanked word is exactly a word that was never there.
The protected-group heuristic reads the text as given: an allowed word is not an insult, but it may still
name a group.

English only: the vectorizer knows English words, so any other language would score on noise.
Texts that are mostly not Latin-script (Chinese, for one) get no finding rather than a false one.

Security note: alt-profanity-check loads its model with joblib, i.e. pickle, from files inside the
installed package. Pickle can run code, so this is only acceptable because the package is pinned
to an exact version (alt-profanity-check==1.9.1, which pins scikit-learn==1.9.1 and joblib==1.6.0)
installed from the registry; never point this loader at a model file from anywhere else.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from importlib import resources
from typing import Sequence

from atelier_sdk.safety import (
    Category,
    Evidence,
    Finding,
    SafetyCheckBase,
    SafetyCheckManifest,
    ScreenContext,
    Target,
)
from atelier_plugins.safety.allowlist import compile_allowed_terms
from atelier_plugins.safety.normalise import joined_view, leet_view, normalise

#: Per-word probability at which a word is named as evidence (and text score from which hate is considered).
WORD_THRESHOLD = 0.5
#: Below this probability a text gets no finding at all: near-zero scores are noise in a report.
MIN_REPORTED_SCORE = 0.1
#: Share of letters that must be Latin for a text to be treated as English.
MIN_LATIN_SHARE = 0.6

_WORD = re.compile(r"[a-z][a-z']*[a-z]|[a-z]")


def known_false_positives() -> tuple[str, ...]:
    """The shipped list of everyday words the model scores as offensive on their own (see the data file)."""
    with resources.files(__package__).joinpath("data/profanity_false_positives.txt").open(encoding="utf-8") as handle:
        return tuple(line.split("#", 1)[0].strip() for line in handle if line.split("#", 1)[0].strip())


def _identity_terms() -> re.Pattern:
    with resources.files(__package__).joinpath("data/identity_terms.txt").open(encoding="utf-8") as handle:
        words = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    alternatives = "|".join(re.escape(word) for word in sorted(words, key=len, reverse=True))
    return re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)


def latin_share(text: str) -> float:
    """Share of Latin letters among letters (after NFKC, so full-width Latin counts as Latin)."""
    letters = [c for c in unicodedata.normalize("NFKC", text) if c.isalpha()]
    if not letters:
        return 0.0
    latin = sum(1 for c in letters if c.isascii() or ("\u00c0" <= c <= "\u024f"))
    return latin / len(letters)


class ProfanityCheck(SafetyCheckBase):
    """Offensive English language (harassment; hate when aimed at a protected group)."""

    manifest = SafetyCheckManifest(
        id="profanity",
        version="1.0.0",
        name="Profanity and insults (English, alt-profanity-check)",
        targets=frozenset({Target.INPUT, Target.OUTPUT}),
        modalities=frozenset({"text"}),
        categories=frozenset({Category.HARASSMENT, Category.HATE}),
    )

    def __init__(self) -> None:
        self._model = None
        self._vectorizer = None
        self._groups: re.Pattern | None = None
        self._false_positives: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def load(self, device: str = "cpu") -> None:
        with self._lock:
            if self._model is not None:
                return
            # Pickle, from inside the pinned package (see the module docstring).
            from profanity_check import profanity_check as library

            self._vectorizer = library.vectorizer
            self._model = _LinearSigmoidEnsemble.of(library.model) or library.model
            self._groups = _identity_terms()
            self._false_positives = known_false_positives()

    def _probabilities(self, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        import sklearn

        # The inputs are always a list of str and the model's own sparse matrix, so scikit-learn's
        # argument checks (a third of the time of screening one short text) are skipped.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return [float(p) for p in self._model.predict_proba(self._vectorizer.transform(list(texts)))[:, 1]]

    def check_texts(self, texts: Sequence[str], context: ScreenContext) -> list[list[Finding]]:
        self.load()
        results: list[list[Finding]] = [[] for _ in texts]
        english = [i for i, text in enumerate(texts) if latin_share(text) >= MIN_LATIN_SHARE]
        if not english:
            return results
        # Score the text as given and a de-obfuscated reading ("f.u.c.k", "1d10t", full-width);
        # the higher score wins, and its words are the evidence. Allowed words are blanked out of each reading,
        # character for character (offsets stay valid), where they are whole words in that reading: blanked
        # before the reading is made, an allowed "u" would take a letter out of "f u c k" and its reading.
        allowed = compile_allowed_terms(self._false_positives + tuple(context.allowed_terms))
        readings = {i: [(allowed.mask(reading), origin) for reading, origin in _readings(texts[i])] for i in english}
        flat = [(i, reading) for i in english for reading in readings[i]]
        scores = self._probabilities([reading[0] for _, reading in flat])
        best: dict[int, tuple[float, tuple[str, tuple[int, ...] | None]]] = {}
        for (i, reading), score in zip(flat, scores):
            if i not in best or score > best[i][0]:
                best[i] = (score, reading)
        words_needed = {}
        for i, (score, (reading_text, origin)) in best.items():
            if score >= MIN_REPORTED_SCORE:
                words_needed[i] = _words(reading_text)
        vocabulary = sorted({word for spans in words_needed.values() for _, _, word in spans})
        word_scores = dict(zip(vocabulary, self._probabilities(vocabulary)))
        for i, (score, (reading_text, origin)) in best.items():
            if score < MIN_REPORTED_SCORE:
                continue
            text = texts[i]
            evidence = []
            spans = words_needed.get(i, [])
            offensive = [(s, e, w) for s, e, w in spans if word_scores.get(w, 0.0) >= WORD_THRESHOLD]
            if not offensive and spans:  # the combination offends, no word alone: name the strongest
                offensive = [max(spans, key=lambda span: word_scores.get(span[2], 0.0))]
            for start, end, word in offensive:
                if origin is not None:
                    start, end = origin[start], origin[end - 1] + 1
                evidence.append(
                    Evidence(start=start, end=end, excerpt=text[start:end], detail=f"offensive word ({word_scores.get(word, 0.0):.2f})")
                )
            findings = [Finding(category=Category.HARASSMENT, score=round(score, 4), check=self.manifest.id, evidence=tuple(evidence))]
            if score >= WORD_THRESHOLD:
                groups = [
                    Evidence(start=m.start(), end=m.end(), excerpt=m.group(), detail="names a protected group (heuristic)")
                    for m in self._groups.finditer(text)
                ]
                if groups:
                    findings.append(
                        Finding(category=Category.HATE, score=round(score, 4), check=self.manifest.id, evidence=tuple(evidence) + tuple(groups))
                    )
            results[i] = findings
        return results

    def check_text(self, text: str, context: ScreenContext) -> list[Finding]:
        return self.check_texts([text], context)[0]


class _LinearSigmoidEnsemble:
    """The same probabilities as the package's ``CalibratedClassifierCV`` of linear SVMs with sigmoid
    calibration, computed with one sparse product instead of sklearn's per-member calls.

    Why: every job submission screens its input, and sklearn's input validation around five small
    linear models cost about 3 ms per call against 0.1 ms for the arithmetic. The maths is
    sklearn's own: each member gives ``expit(-(a * (x . w + c) + b))`` for the positive class and
    the ensemble is their mean (tests compare both on the labelled safety set).
    """

    def __init__(self, weights, intercepts, slopes, offsets) -> None:
        self.weights, self.intercepts, self.slopes, self.offsets = weights, intercepts, slopes, offsets

    @classmethod
    def of(cls, model) -> "_LinearSigmoidEnsemble | None":
        """The fast form of ``model``, or None when it is not the binary, linear, sigmoid ensemble
        this was written for (another package version): then sklearn's own path runs."""
        import numpy as np

        members = getattr(model, "calibrated_classifiers_", None)
        if not members or getattr(model, "method", None) != "sigmoid" or len(getattr(model, "classes_", ())) != 2:
            return None
        for member in members:
            estimator = member.estimator
            if (len(member.calibrators) != 1 or not hasattr(estimator, "coef_") or estimator.coef_.shape[0] != 1
                    or not hasattr(member.calibrators[0], "a_")):
                return None
        return cls(
            weights=np.stack([m.estimator.coef_.ravel() for m in members], axis=1),
            intercepts=np.array([float(m.estimator.intercept_[0]) for m in members]),
            slopes=np.array([float(m.calibrators[0].a_) for m in members]),
            offsets=np.array([float(m.calibrators[0].b_) for m in members]),
        )

    def predict_proba(self, features):
        import numpy as np
        from scipy.special import expit

        decision = np.asarray(features @ self.weights) + self.intercepts
        positive = expit(-(self.slopes * decision + self.offsets)).mean(axis=1)
        return np.column_stack([1.0 - positive, positive])


def _words(text: str) -> list[tuple[int, int, str]]:
    """The lower-case words of ``text`` as (start, end, word), with offsets into ``text`` itself.

    Lower-casing can lengthen a text ("İ" becomes "i" and a combining dot), which would shift every
    offset after it; words are found in the lower-case text and their spans mapped back.
    """
    lowered = text.lower()
    if len(lowered) == len(text):  # lower() never shortens a character, so this is one for one
        return [(m.start(), m.end(), m.group()) for m in _WORD.finditer(lowered)]
    origin = [index for index, char in enumerate(text) for _ in char.lower()]
    return [(origin[m.start()], origin[m.end() - 1] + 1, m.group()) for m in _WORD.finditer(lowered)]


def _readings(text: str) -> list[tuple[str, tuple[int, ...] | None]]:
    """The text as given (offsets are its own), plus its de-obfuscated reading with an origin map."""
    base = normalise(text)
    reading = leet_view(joined_view(base), "i")
    if reading.text == text.lower():
        return [(text, None)]
    return [(text, None), (reading.text, reading.origin)]


__all__ = ["ProfanityCheck", "known_false_positives", "latin_share"]
