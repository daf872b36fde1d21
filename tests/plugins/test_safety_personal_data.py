"""The personal-data check: only checksum-valid numbers are flagged, spans are exact, masking works."""

from __future__ import annotations

import pytest
from atelier_sdk.safety import Category, ScreenContext

from atelier_plugins.safety.personal_data import PersonalDataCheck, mask


def found(text: str) -> list[tuple[str, str]]:
    findings = PersonalDataCheck().check_text(text, ScreenContext())
    assert all(f.category == Category.PERSONAL_DATA and f.score == 1.0 for f in findings)
    return [(e.detail, text[e.start : e.end]) for f in findings for e in f.evidence]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("write to jane.doe@example.com today", [("email", "jane.doe@example.com")]),
        ("邮箱zhang.wei@example.cn谢谢", [("email", "zhang.wei@example.cn")]),
        ("call +1 650-253-0000 now", [("phone", "+1 650-253-0000")]),
        ("ring +44 20 7946 0958", [("phone", "+44 20 7946 0958")]),
        ("手机13812345678找我", [("phone", "13812345678")]),
        ("手机 138 1234 5678", [("phone", "138 1234 5678")]),
        ("电话+86-139-1234-5678。", [("phone", "+86-139-1234-5678")]),
        ("card 4111 1111 1111 1111 exp", [("card", "4111 1111 1111 1111")]),
        ("card 5555-5555-5555-4444", [("card", "5555-5555-5555-4444")]),
        ("amex 378282246310005", [("card", "378282246310005")]),
        ("身份证11010519491231002X。", [("cn_id", "11010519491231002X")]),
        ("id 110105199003071239", [("cn_id", "110105199003071239")]),
        ("IBAN GB82 WEST 1234 5698 7654 32 thanks", [("iban", "GB82 WEST 1234 5698 7654 32")]),
        ("from DE89370400440532013000.", [("iban", "DE89370400440532013000")]),
    ],
)
def test_valid_personal_data_is_found_with_its_span(text, expected):
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 exp",  # Luhn fails
        "voucher 4929 1234 5678 9012",  # 16 digits, not Luhn-valid
        "id 110105199003071238",  # Chinese ID with a wrong check digit
        "id 11010520300101001X",  # checksum fine, but born in 2030
        "IBAN GB82 WEST 1234 5698 7654 33",  # mod-97 fails
        "订单号 13812345678 已发货",  # phone-shaped order number
        "order number 13812345678",
        "your order 20231108123456 ships tomorrow",
        "version 4.2.1 on 2023-10-05",
        "tracking 1Z999AA10123456784",
    ],
)
def test_invalid_or_non_personal_numbers_are_not_flagged(text):
    assert found(text) == []


def test_mask_replaces_each_span_with_a_typed_placeholder():
    text = "Mail a.b@example.com, card 4111-1111-1111-1111, 手机13812345678, ID 11010519491231002X, IBAN NL91ABNA0417164300."
    findings = PersonalDataCheck().check_text(text, ScreenContext())
    assert mask(text, findings) == "Mail [email], card [card], 手机[phone], ID [cn_id], IBAN [iban]."
    assert mask("nothing here", []) == "nothing here"


def test_evidence_excerpt_does_not_copy_the_number_into_the_report():
    (finding,) = PersonalDataCheck().check_text("card 4111 1111 1111 1111", ScreenContext())
    assert finding.evidence[0].excerpt == "**** **** **** 1111"
