"""Scores of generated texts against references, with sacrebleu (its default settings, so that figures compare with
any other sacrebleu score: chrF with character order 6, beta 2; BLEU tokenised 13a, except for references in
Chinese, Japanese or Korean, which 13a does not split into words: a whole Chinese sentence was one "word", and
BLEU near 0 whatever the answer. Those are tokenised ``zh`` (each Han character a word; other text as 13a), or
``char`` where kana or hangul are among them. The tokenisation used is in the metrics: ``bleu_tokenize``)."""

from __future__ import annotations

import re
from typing import Sequence

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA_HANGUL = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")


def bleu_tokenize(references: Sequence[str]) -> str:
    """The sacrebleu tokeniser for these references (see the module's docstring)."""
    text = "".join(references)
    if _KANA_HANGUL.search(text):
        return "char"
    return "zh" if _HAN.search(text) else "13a"


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float | str | None]:
    """Corpus BLEU and chrF (0-100) of ``hypotheses`` against one reference each; None for none."""
    if not hypotheses:
        return {"bleu": None, "chrf": None}
    import sacrebleu  # imported here: only the process that scores a run needs it

    refs = [list(references)]
    tokenize = bleu_tokenize(references)
    return {"bleu": round(sacrebleu.corpus_bleu(list(hypotheses), refs, tokenize=tokenize).score, 2),
            "chrf": round(sacrebleu.corpus_chrf(list(hypotheses), refs).score, 2), "bleu_tokenize": tokenize}


def sentence_chrf(hypothesis: str, reference: str) -> float:
    import sacrebleu

    return round(sacrebleu.sentence_chrf(hypothesis, [reference]).score, 2)
