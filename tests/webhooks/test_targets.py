"""The SSRF guard: which URLs a webhook may call."""

from __future__ import annotations

import pytest

from atelier_platform.webhooks.targets import UnsafeTarget, check_target

REFUSED_ADDRESSES = [
    "http://127.0.0.1/hook",
    "http://127.1.2.3:8080/hook",
    "http://localhost:8000/hook",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://10.0.0.5/",
    "http://172.16.3.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # carrier-grade NAT: not public
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://[::1]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped loopback
    "http://[::ffff:169.254.169.254]/",
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of the metadata address
    "http://[::]/",
    "http://[ff02::1]/",
]


@pytest.mark.parametrize("url", REFUSED_ADDRESSES)
def test_private_loopback_link_local_and_special_addresses_are_refused(url):
    with pytest.raises(UnsafeTarget, match="Webhooks call public addresses only"):
        check_target(url, allow_private=False)


@pytest.mark.parametrize("url,reason", [
    ("", "Give the URL"),
    ("ftp://example.com/x", "Only http:// and https://"),
    ("file:///etc/passwd", "Only http:// and https://"),
    ("javascript:alert(1)", "Only http:// and https://"),
    ("http:///no-host", "no host"),
    ("http://user:secret@example.com/", "Credentials in the URL"),
    ("http://example.com:99999/", "cannot be parsed"),
    ("http://example.com/a b", "spaces"),
    ("https://example.com/#frag", "fragment"),
    ("https://" + "a" * 2001 + ".com/", "longer than"),
    ("http://no-such-host.invalid/", "cannot be resolved"),
    ("http://exa\u200dmple..com/", "not a valid domain name"),
])
def test_malformed_urls_are_refused_with_a_reason(url, reason):
    with pytest.raises(UnsafeTarget, match=reason):
        check_target(url, allow_private=False)


def test_a_public_host_is_accepted_with_every_address_it_resolves_to(resolve_as):
    resolve_as("hooks.example.com", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
    target = check_target("https://hooks.example.com/in?x=1", allow_private=False)
    assert (target.scheme, target.host, target.port, target.path) == ("https", "hooks.example.com", 443, "/in?x=1")
    assert target.addresses == ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")


def test_an_internationalised_host_is_resolved_and_called_by_its_ascii_name(resolve_as):
    resolve_as("xn--bcher-kva.example", ["93.184.215.14"])
    target = check_target("https://bücher.example/eingang", allow_private=False)
    assert (target.host, target.path) == ("xn--bcher-kva.example", "/eingang")


def test_one_private_address_among_public_ones_is_enough_to_refuse(resolve_as):
    resolve_as("mixed.example.com", ["93.184.215.14", "10.1.2.3"])
    with pytest.raises(UnsafeTarget, match="10.1.2.3, a private address"):
        check_target("https://mixed.example.com/", allow_private=False)


def test_metadata_address_is_named_in_the_reason():
    with pytest.raises(UnsafeTarget, match="cloud metadata"):
        check_target("http://169.254.169.254/", allow_private=False)


def test_operator_setting_allows_private_targets_but_never_multicast_or_unspecified(webhook_config):
    webhook_config(webhooks_allow_private_targets=True)
    assert check_target("http://127.0.0.1:9/hook").addresses == ("127.0.0.1",)
    assert check_target("http://169.254.169.254/").addresses == ("169.254.169.254",)
    for url in ("http://224.0.0.1/", "http://0.0.0.0/"):
        with pytest.raises(UnsafeTarget):
            check_target(url)


def test_the_default_refuses_private_targets():
    with pytest.raises(UnsafeTarget):
        check_target("http://127.0.0.1:9/hook")


@pytest.mark.parametrize("url", [
    "http://240.0.0.1/",  # reserved (class E)
    "http://255.255.255.255/",  # limited broadcast
    "http://192.0.2.10/",  # documentation (TEST-NET-1): no host of a real network has it
    "http://198.18.0.1/",  # benchmarking
    "http://[2001:db8::1]/",  # documentation
    "http://[100::1]/",  # discard-only
])
def test_the_operator_setting_opens_closed_networks_only_never_reserved_or_documentation_addresses(webhook_config, url):
    webhook_config(webhooks_allow_private_targets=True)
    with pytest.raises(UnsafeTarget) as refused:
        check_target(url)
    # the setting is on already: the reason must not send the operator to it
    assert "ATELIER_WEBHOOKS_ALLOW_PRIVATE_TARGETS" not in str(refused.value)


@pytest.mark.parametrize("url", ["http://10.0.0.5/", "http://172.16.3.4/", "http://192.168.1.1/", "http://100.64.0.1/",
                                 "http://[::1]/", "http://[fc00::1]/", "http://[fe80::1]/", "http://[::ffff:10.0.0.5]/"])
def test_the_operator_setting_opens_every_address_of_a_closed_network(webhook_config, url):
    webhook_config(webhooks_allow_private_targets=True)
    assert check_target(url).addresses


@pytest.mark.parametrize("url,hint", [("http://10.0.0.5/", True), ("http://127.0.0.1/", True),
                                      ("http://240.0.0.1/", False), ("http://192.0.2.10/", False)])
def test_only_addresses_the_setting_would_open_point_to_it(url, hint):
    with pytest.raises(UnsafeTarget) as refused:
        check_target(url, allow_private=False)
    assert ("ATELIER_WEBHOOKS_ALLOW_PRIVATE_TARGETS" in str(refused.value)) is hint
