"""The blocklist check: obfuscations caught with original-text spans, innocent words left alone."""

from __future__ import annotations

import pytest
from atelier_sdk.safety import BlocklistTerm, Category, ScreenContext

from atelier_plugins.safety import blocklist as blocklist_module
from atelier_plugins.safety.blocklist import BlocklistCheck, InvalidBlocklistTerm, compile_blocklist, validate_term

TERMS = (
    BlocklistTerm(pattern="bad"),
    BlocklistTerm(pattern="ass", category=Category.HARASSMENT),
    BlocklistTerm(pattern="kill"),
    BlocklistTerm(pattern="scam"),
    BlocklistTerm(pattern="heroin", category=Category.ILLICIT),
    BlocklistTerm(pattern="replica watch"),
    BlocklistTerm(pattern="毒品", category=Category.ILLICIT),
    BlocklistTerm(pattern="赌博"),
    BlocklistTerm(pattern=r"\bfree\s+(?:bitcoin|money)\b", is_regex=True, category=Category.SPAM),
)


def spans(text: str, terms=TERMS) -> list[tuple[int, int, str]]:
    findings = BlocklistCheck().check_text(text, ScreenContext(blocklist=terms))
    return sorted((e.start, e.end, e.excerpt) for f in findings for e in f.evidence)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("this is bad.", (8, 11, "bad")),
        ("THIS IS BAD", (8, 11, "BAD")),
        ("so ｂａｄ today", (3, 6, "ｂａｄ")),  # full-width (NFKC)
        ("so b\u200ba\u200dd today", (3, 8, "b\u200ba\u200dd")),  # zero-width space and joiner
        ("so b\u00adad", (3, 7, "b\u00adad")),  # soft hyphen
        ("so b\u0430d", (3, 6, "b\u0430d")),  # Cyrillic a
        ("so \u0392\u0391D", (3, 6, "\u0392\u0391D")),  # Greek capitals Beta, Alpha
        ("so b.a.d", (3, 8, "b.a.d")),
        ("so b a d!", (3, 8, "b a d")),
        ("so b-a-d", (3, 8, "b-a-d")),
        ("it is a b a d idea", (8, 13, "b a d")),  # a one-letter word before the spelled-out one
        ("so b_a*d", (3, 8, "b_a*d")),
        ("so b4d", (3, 6, "b4d")),
        ("I will ki11 it", (7, 11, "ki11")),  # 1 read as l
        ("I will k1ll it", (7, 11, "k1ll")),
        ("what a 5c@m", (7, 11, "5c@m")),
        ("what a $cam", (7, 11, "$cam")),
        ("h3r0in for sale", (0, 6, "h3r0in")),
        ("cheap replica   watch", (6, 21, "replica   watch")),
        ("bád news", (0, 3, "bád")),  # diacritics
    ],
)
def test_obfuscations_are_caught_with_the_original_span(text, expected):
    assert expected in spans(text)
    start, end, excerpt = expected
    assert text[start:end] == excerpt


@pytest.mark.parametrize(
    "text",
    [
        "the class starts at nine",
        "Scunthorpe and Essex are places; embassy staff passed.",
        "the hero in the story",
        "a badge and a badminton racket",
        "skill and killer whales",
        "the 7 days of 2024",
        "he'll be fine",
        "brass band",
        "free shipping on all orders",
    ],
)
def test_innocent_words_are_not_flagged(text):
    assert spans(text) == []


def test_chinese_term_inside_a_sentence_without_spaces():
    text = "我们这里出售毒品和其他东西"
    assert spans(text) == [(6, 8, "毒品")]


def test_chinese_traditional_text_matches_simplified_term_and_spaced_out_term():
    assert spans("網上賭博平台") == [(2, 4, "賭博")]
    assert spans("出售毒 品") == [(2, 5, "毒 品")]


def test_findings_carry_each_terms_category_and_regex_terms_match_normalised_text():
    findings = BlocklistCheck().check_text("FREE   Bitcoin, you ass", ScreenContext(blocklist=TERMS))
    by_category = {f.category: f for f in findings}
    assert set(by_category) == {Category.SPAM, Category.HARASSMENT}
    assert all(f.score == 1.0 and f.check == "blocklist" for f in findings)
    spam = by_category[Category.SPAM].evidence[0]
    assert (spam.start, spam.end) == (0, 14)


def test_no_blocklist_means_no_findings():
    assert BlocklistCheck().check_texts(["bad"], ScreenContext()) == [[]]


def test_nested_quantifier_regex_is_rejected_with_a_clear_error():
    with pytest.raises(InvalidBlocklistTerm, match="nested quantifier"):
        validate_term(BlocklistTerm(pattern=r"(a+)+$", is_regex=True))
    with pytest.raises(InvalidBlocklistTerm, match="nested quantifier"):
        compile_blocklist([BlocklistTerm(pattern="fine"), BlocklistTerm(pattern=r"(\w+\s?)*x", is_regex=True)])
    with pytest.raises(InvalidBlocklistTerm, match="does not compile"):
        validate_term(BlocklistTerm(pattern="(unclosed", is_regex=True))
    validate_term(BlocklistTerm(pattern=r"\bbuy\s+now\b", is_regex=True))  # a plain quantifier is fine


def test_term_that_normalises_to_nothing_is_rejected():
    with pytest.raises(InvalidBlocklistTerm, match="empty"):
        validate_term(BlocklistTerm(pattern="\u200b\u200b"))


def test_fifty_thousand_terms_compile_once_and_screen():
    terms = [BlocklistTerm(pattern=f"zq{index:05d}word") for index in range(50_000)]
    terms.append(BlocklistTerm(pattern="needle"))
    before = blocklist_module.compile_count
    first = compile_blocklist(terms)
    assert blocklist_module.compile_count == before + 1
    # An equal list built afresh (what the platform does per request) reuses the automaton.
    again = compile_blocklist([BlocklistTerm(pattern=t.pattern) for t in terms])
    as_tuple = tuple(terms)
    assert compile_blocklist(as_tuple) is first and compile_blocklist(as_tuple) is first
    assert again is first
    assert blocklist_module.compile_count == before + 1
    check = BlocklistCheck()
    results = check.check_texts(["a n-e-e-d-l-e here", "zq04242word and zq00001word", "nothing"], ScreenContext(blocklist=as_tuple))
    assert [e.excerpt for e in results[0][0].evidence] == ["n-e-e-d-l-e"]
    assert sorted(e.excerpt for e in results[1][0].evidence) == ["zq00001word", "zq04242word"]
    assert results[2] == []
    assert blocklist_module.compile_count == before + 1


def test_a_changed_list_compiles_again():
    before = blocklist_module.compile_count
    compile_blocklist([BlocklistTerm(pattern="alpha-one")])
    compile_blocklist([BlocklistTerm(pattern="alpha-one"), BlocklistTerm(pattern="alpha-two")])
    assert blocklist_module.compile_count == before + 2
