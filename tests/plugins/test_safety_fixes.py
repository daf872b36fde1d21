"""Safety checks on text that is not plain ASCII: regex blocklist terms with non-ASCII letters,
personal data typed in full-width characters, offensive words after a dotted capital I."""

from __future__ import annotations

import pytest
from atelier_sdk.safety import BlocklistTerm, Category, ScreenContext

from atelier_plugins.safety.blocklist import BlocklistCheck, validate_term
from atelier_plugins.safety.personal_data import PersonalDataCheck, mask
from atelier_plugins.safety.profanity import ProfanityCheck


def regex_evidence(pattern: str, text: str) -> list[str]:
    """The excerpts a reviewer sees for a regex term saved by a project, checked against the text."""
    term = BlocklistTerm(pattern=pattern, is_regex=True, category=Category.ILLICIT)
    validate_term(term)  # accepted when the project saves it
    findings = BlocklistCheck().check_text(text, ScreenContext(blocklist=(term,)))
    evidence = [e for f in findings for e in f.evidence]
    assert all(text[e.start : e.end] == e.excerpt for e in evidence)
    return [e.excerpt for e in evidence]


@pytest.mark.parametrize(
    "pattern, text, excerpt",
    [
        (r"賭博\s*網站", "最好的賭博網站在這裡", "賭博網站"),  # traditional Chinese
        (r"café\s+noir", "Un café noir, s'il vous plaît", "café noir"),  # an accented letter
        (r"straße\d+", "Wohnt in der Straße12 hier", "Straße12"),  # ß
        (r"ＶＩＰ\d+", "加入ＶＩＰ88会员", "ＶＩＰ88"),  # full-width, as a Chinese input method types it
    ],
    ids=["traditional_chinese", "accent", "sharp_s", "full_width"],
)
def test_a_regex_term_matches_its_own_text(pattern, text, excerpt):
    assert regex_evidence(pattern, text) == [excerpt]


@pytest.mark.parametrize(
    "pattern, text, excerpt",
    [
        (r"賭博\s*網站", "最好的赌博网站", "赌博网站"),  # simplified text, traditional pattern
        (r"café\s+noir", "un ｃａｆé  NOIR", "ｃａｆé  NOIR"),  # full-width letters, two spaces, capitals
        (r"straße\d+", "STRASSE 12 or strasse12", "strasse12"),
        (r"[賭]博", "開設賭博", "賭博"),  # a character class
    ],
    ids=["simplified", "full_width_and_spacing", "ss_spelling", "class"],
)
def test_a_regex_term_also_matches_the_variants_a_literal_term_would(pattern, text, excerpt):
    assert regex_evidence(pattern, text) == [excerpt]


@pytest.mark.parametrize(
    "text, kind, masked",
    [
        ("我的手机号是１３８１２３４５６７８，请回电", "phone", "我的手机号是[phone]，请回电"),
        ("联系邮箱：zhang.san＠example.com 谢谢", "email", "联系邮箱：[email] 谢谢"),
        ("卡号 ４１１１ １１１１ １１１１ １１１１ 已绑定", "card", "卡号 [card] 已绑定"),
    ],
    ids=["phone", "email", "card"],
)
def test_personal_data_in_full_width_characters_is_found_and_masked_in_place(text, kind, masked):
    findings = PersonalDataCheck().check_text(text, ScreenContext())
    evidence = [e for f in findings for e in f.evidence]
    assert [e.detail for e in evidence] == [kind]
    assert mask(text, findings) == masked


def test_profanity_evidence_after_a_dotted_capital_i_names_the_offensive_word():
    text = "İzmir people are idiots"  # "İ".lower() is two characters
    findings = ProfanityCheck().check_text(text, ScreenContext())
    evidence = [e for f in findings if f.category == Category.HARASSMENT for e in f.evidence]
    assert [(e.start, e.end, e.excerpt) for e in evidence if "idiot" in e.excerpt] == [(17, 23, "idiots")]
    assert all(text[e.start : e.end] == e.excerpt for f in findings for e in f.evidence)
