"""Scores of generated texts against references, with sacrebleu (default tokenisation and settings, so that
figures compare with any other sacrebleu score: BLEU 13a, chrF with character order 6, beta 2)."""

from __future__ import annotations

from typing import Sequence


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float | None]:
    """Corpus BLEU and chrF (0-100) of ``hypotheses`` against one reference each; None for none."""
    if not hypotheses:
        return {"bleu": None, "chrf": None}
    import sacrebleu  # imported here: only the process that scores a run needs it

    refs = [list(references)]
    return {"bleu": round(sacrebleu.corpus_bleu(list(hypotheses), refs).score, 2),
            "chrf": round(sacrebleu.corpus_chrf(list(hypotheses), refs).score, 2)}


def sentence_chrf(hypothesis: str, reference: str) -> float:
    import sacrebleu

    return round(sacrebleu.sentence_chrf(hypothesis, [reference]).score, 2)
