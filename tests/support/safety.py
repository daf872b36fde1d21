"""A safety check for platform tests: real matching of a few fixed words and e-mail addresses."""

from __future__ import annotations

import re

from atelier_sdk.safety import Category, Evidence, Finding, SafetyCheckBase, SafetyCheckManifest, Target

WORDS = {"violent": (Category.VIOLENCE, 0.95), "borderline": (Category.HARASSMENT, 0.6), "shady": (Category.ILLICIT, 0.3)}
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


class WordCheck(SafetyCheckBase):
    manifest = SafetyCheckManifest(
        id="test_words", version="1.0.0", name="Test words", targets=frozenset({Target.INPUT, Target.OUTPUT}),
        categories=frozenset({Category.VIOLENCE, Category.HARASSMENT, Category.ILLICIT, Category.PERSONAL_DATA}),
    )

    def check_text(self, text, context):
        findings = []
        for match in re.finditer(r"\w+", text):
            if match.group().lower() in WORDS:
                category, score = WORDS[match.group().lower()]
                findings.append(Finding(category, score, self.manifest.id, (Evidence(match.start(), match.end(), match.group()),)))
        for match in EMAIL.finditer(text):
            findings.append(Finding(Category.PERSONAL_DATA, 1.0, self.manifest.id, (Evidence(match.start(), match.end(), match.group()),)))
        for term in context.blocklist:
            index = text.lower().find(term.pattern.lower())
            if index >= 0:
                findings.append(Finding(term.category, 1.0, self.manifest.id, (Evidence(index, index + len(term.pattern)),)))
        return findings
