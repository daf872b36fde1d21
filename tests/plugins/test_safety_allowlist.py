"""The allow list in the checks: allowed words are not counted by the profanity model but the rest of a text is,
published contacts are not personal data, and the blocklist ignores it all. Also the shipped list of the model's
false positives on product words, held to what it was measured to be."""

from __future__ import annotations

import pytest
from atelier_sdk.safety import BlocklistTerm, Category, PublishedContact, ScreenContext

from atelier_plugins.safety import evaluate
from atelier_plugins.safety.allowlist import InvalidAllowEntry, allow_entry_key, compile_allowed_terms, detect_kind
from atelier_plugins.safety.blocklist import BlocklistCheck
from atelier_plugins.safety.personal_data import PersonalDataCheck
from atelier_plugins.safety.profanity import WORD_THRESHOLD, ProfanityCheck, known_false_positives


@pytest.fixture(scope="module")
def profanity():
    check = ProfanityCheck()
    check.load()
    return check


def harassment(check, text: str, context: ScreenContext | None = None):
    found = {f.category: f for f in check.check_text(text, context or ScreenContext())}
    return found.get(Category.HARASSMENT)


def allowing(*terms: str) -> ScreenContext:
    return ScreenContext(allowed_terms=tuple(allow_entry_key("term", term) for term in terms))


@pytest.mark.parametrize("copy", ["Merino wool scarf.", "100% wool", "Your orders are packed within two days.",
                                  "All-season tires for your truck."])
def test_product_copy_the_model_misread_is_not_harassment(profanity, copy):
    """"wool" alone scored 0.62: a merino scarf's copy was flagged as harassment and needed two approvals."""
    finding = harassment(profanity, copy)
    assert finding is None or finding.score < 0.5


def test_a_projects_allowed_word_is_not_counted(profanity):
    text = "A white vase."  # the model reads "white" (0.70 alone) as abuse; not on the shipped list
    assert harassment(profanity, text).score >= 0.5
    assert harassment(profanity, text, allowing("white")) is None
    # as the screening normalises: any case, full-width letters
    assert harassment(profanity, "A ＷＨＩＴＥ vase.", allowing("White")) is None


def test_an_allowed_word_never_carries_abuse_past_the_check(profanity):
    """Only the allowed word is left out: what stands beside it is scored as if it stood alone."""
    for insult in ("you are a fucking idiot", "shut up you pathetic loser"):
        alone = harassment(profanity, insult)
        beside = harassment(profanity, f"wool {insult} wool", allowing("wool"))
        assert beside.score == alone.score >= 0.9
        assert {e.excerpt for e in beside.evidence} == {e.excerpt for e in alone.evidence}
        assert "wool" not in {e.excerpt for e in beside.evidence}


def test_only_whole_words_and_phrases_are_allowed(profanity):
    # "white" allowed, "whitey" (a slur) is another word
    assert harassment(profanity, "shut up whitey", allowing("white")).score >= 0.5
    allowed = compile_allowed_terms(("merino wool",))
    assert allowed.mask("Merino  Wool throw, wool rug") == "             throw, wool rug"


@pytest.mark.parametrize("text, allowed", [
    ("f.u.c.k.i.n.g", "u"), ("s h i t", "i"), ("you a.s.s.h.o.l.e", "s"), ("you s-l-u-t", "l"),
    ("you i d i o t", "d"), ("f u c k you", "u"), ("f u c k you", "fu"), ("you are an i d i o t", "an"),
])
def test_an_allowed_word_does_not_break_a_spelled_out_insult(profanity, text, allowed):
    """Allowed words were blanked before the de-obfuscated reading was made: an allowed "u" (or "s", a size)
    took a letter out of "f.u.c.k.i.n.g", whose reading then scored nothing. (Single letters are refused as
    entries now; the check does not rely on that.)"""
    alone = harassment(profanity, text)
    beside = harassment(profanity, text, ScreenContext(allowed_terms=(allowed,)))
    assert beside is not None and beside.score == alone.score >= 0.8


def test_a_crafted_list_of_overlapping_terms_masks_each_place_once():
    """"aa", "aa aa", ... "aa" * 250 on a text of 10,000 "aa": every overlapping occurrence was a span, and each
    span was blanked on its own (millions of them, seconds of a worker shared by every project). The leftmost
    longest occurrences are taken: spans in order, none overlapping."""
    allowed = compile_allowed_terms(tuple(" ".join(["aa"] * k) for k in range(1, 251)))
    text = " ".join(["aa"] * 10_000)
    spans = allowed.spans(text)
    assert len(spans) == 40  # 10,000 words, 250 at a time
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
    assert allowed.mask(text).strip() == ""


def test_the_blocklist_always_wins():
    context = ScreenContext(blocklist=(BlocklistTerm(pattern="wool", category=Category.CUSTOM),), allowed_terms=("wool",))
    [finding] = BlocklistCheck().check_text("a merino wool scarf", context)
    assert finding.category == Category.CUSTOM and finding.score == 1.0


def test_every_shipped_word_is_still_a_false_positive_of_the_model_and_hides_nothing(profanity):
    """The shipped list holds what was measured: each word alone scores at least 0.5 with this model (one the model
    no longer misreads comes off the list), and around each harmful English text of the labelled set it changes
    none of the findings (recall cannot move)."""
    words = known_false_positives()
    assert words and all(score >= WORD_THRESHOLD for score in profanity._probabilities(list(words)))
    harmful = [e["text"] for e in evaluate.load_examples() if e["labels"] and e["lang"] == "en"]
    expected = [[(f.category, f.score) for f in found] for found in profanity.check_texts(harmful, ScreenContext())]
    for word in words:
        padded = profanity.check_texts([f"{word} {text} {word}" for text in harmful], ScreenContext())
        assert [[(f.category, f.score) for f in found] for found in padded] == expected, word


# --- published contacts ------------------------------------------------------------------------------------------

PUBLISHED = ScreenContext(published_contacts=(
    PublishedContact("email", allow_entry_key("email", "Support@LumenLoom.example")),
    PublishedContact("phone", allow_entry_key("phone", "1-800-555-0142")),
    PublishedContact("url", allow_entry_key("url", "https://wa.me/18005550142")),
))


@pytest.mark.parametrize("text", [
    "You can e-mail us at support@lumenloom.example. You can call us on 1-800-555-0142.",
    "Write to SUPPORT@lumenloom.example or ring (800) 555-0142, or +1 800 555 0142 from abroad.",
    "Chat with us on https://wa.me/18005550142",
])
def test_the_projects_published_contacts_are_not_personal_data(text):
    assert PersonalDataCheck().check_text(text, ScreenContext())  # they would be, unpublished
    assert PersonalDataCheck().check_text(text, PUBLISHED) == []


def test_other_contacts_beside_the_published_ones_are_still_reported():
    text = "Mail support@lumenloom.example or priya@lumenloom.example, call 1-800-555-0142 or 1-800-555-0143, " \
           "or https://wa.me/18005550143"
    [finding] = PersonalDataCheck().check_text(text, PUBLISHED)
    assert [text[e.start:e.end] for e in finding.evidence] == ["priya@lumenloom.example", "1-800-555-0143", "18005550143"]


@pytest.mark.parametrize("kind, value, key", [
    ("email", " Support@LumenLoom.example ", "support@lumenloom.example"),
    ("phone", "(800) 555-0142", "+18005550142"),
    ("phone", "+86 138 1234 5678", "+8613812345678"),
    ("url", "HTTPS://Shop.Example/Contact/", "https://shop.example/Contact"),
    ("term", "Merino  WOOL", "merino wool"),
])
def test_entries_are_kept_in_the_form_screening_compares(kind, value, key):
    assert allow_entry_key(kind, value) == key


@pytest.mark.parametrize("kind, value, says", [
    ("email", "support at shop", "not an e-mail address"), ("phone", "555-0142", "country code"),
    ("url", "shop.example/contact", "with its scheme"), ("term", "\u200b", "fewer than two letters or digits"),
    ("term", "s", "fewer than two letters or digits"), ("term", " u. ", "fewer than two letters or digits"),
])
def test_an_entry_that_cannot_be_used_is_refused_saying_why(kind, value, says):
    with pytest.raises(InvalidAllowEntry, match=says):
        allow_entry_key(kind, value)


@pytest.mark.parametrize("value, kind", [
    ("support@shop.example", "email"), ("+1 800 555 0142", "phone"), ("https://shop.example", "url"),
    ("merino wool", "term"), ("3M", "term"), ("2024", "term"),
])
def test_the_kind_of_an_entry_given_without_one_is_detected(value, kind):
    assert detect_kind(value) == kind
