"""The settings page's refusals in the page's language: of a safety policy, a blocklist term or an allow-list entry,
an API key, a member's role, a webhook endpoint.

The services refuse in English, which the API and the admin keep, and give each refusal a stable code and the
values its English names: ``SafetyPolicy.clean`` (an audit sample above 100, a threshold out of order),
``moderation.policies`` (an empty term, a regular expression that could hang screening or does not compile, too
many allow-list entries), the safety checks' own refusals of a term or an entry (``atelier_sdk.safety.RefusedValue``:
``blocklist.regex_nests_quantifiers``, ``allowlist.not_an_email``), ``accounts.services`` (a key with no scope, an
unknown scope or role, a scope the owner lacks) and the webhook services (``WebhookError.reason``: a URL that is
malformed or reaches a private address, an unknown event type, too many endpoints). This module says each in the
page's words, by its code, with its values: a threshold's category by its name (``labels.category_label``), as the
thresholds table shows it. A refusal without a code known here (another check's, a third party's) keeps its English;
the dashboard's own messages (``settings_views``) and Django's field messages are translated already. The values
are put in as text: the template escapes them, as it does the rest of the message.
"""

from __future__ import annotations

from typing import Any

from datetime import datetime

from django.core.exceptions import ValidationError
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy as _

from atelier_frontend.labels import category_label

#: By the code the platform raises each with; the values are the platform's (``ValidationError.params``, a
#: ``RefusedValue``'s or a ``WebhookError``'s ``params``).
MESSAGES = {
    # the review policy (SafetyPolicy.clean), the blocklist and the allow list (moderation.policies)
    "audit_sample_above_100": _("At most 100."),
    "thresholds_out_of_order": _("%(category)s: need 0 <= review <= block <= 1 (review %(review)s, block %(block)s)."),
    "empty_term": _("Empty term."),
    "regex_nests_quantifiers": _("The regular expression “%(pattern)s” nests quantifiers (like (a+)+) and could hang "
                                 "screening."),
    "regex_does_not_compile": _("The regular expression “%(pattern)s” does not compile: %(error)s."),
    "empty_value": _("Empty value."),
    "too_many_entries": _("At most %(limit)s entries at a time."),
    "allowlist_full": _("A project's allow list holds at most %(limit)s entries; this would make it %(total)s."),
    "too_many_terms": _("At most %(limit)s terms at a time."),
    "not_in_blocklist": _("Not in the blocklist (a plain term is found whatever its case, a regular expression only "
                          "as typed, with “regular expressions” ticked): nothing was removed."),
    "not_in_allowlist": _("Not in the allow list (removed meanwhile?): nothing was removed."),
    "entry_too_long": _("“%(start)s…” is longer than 500 characters."),
    # the built-in safety checks' own refusals of a term (atelier_plugins.safety.blocklist) or an allow-list entry
    # (atelier_plugins.safety.allowlist)
    "blocklist.regex_does_not_compile": _("The regular expression “%(pattern)s”%(read_as)s does not compile: "
                                          "%(error)s."),
    "blocklist.regex_nests_quantifiers": _("The regular expression “%(pattern)s”%(read_as)s repeats a group that "
                                           "itself repeats (like (a+)+ or (\\w+\\s?)*), which can take exponential "
                                           "time: rewrite it without repeating the group, or use plain terms."),
    "blocklist.term_empty_when_normalised": _("The term “%(pattern)s” is empty once invisible characters and spacing "
                                              "are removed: enter visible text."),
    "allowlist.term_too_short": _("“%(value)s” has fewer than two letters or digits once normalised: enter a word or "
                                  "a phrase."),
    "allowlist.not_an_email": _("“%(value)s” is not an e-mail address: give one like support@shop.example."),
    "allowlist.not_a_phone_number": _("“%(value)s” is not a valid phone number: give it with its country code, like "
                                      "+1 800 555 0142."),
    "allowlist.not_a_web_address": _("“%(value)s” is not a web address: give it with its scheme, like "
                                     "https://shop.example/contact."),
    "allowlist.unknown_kind": _("“%(kind)s” is not a kind of entry: use one of %(kinds)s."),
    # API keys and members (accounts.services)
    "no_scopes": _("A key needs at least one scope: tick one or more."),
    "unknown_scopes": _("Unknown scope: %(unknown)s. Choose among %(scopes)s."),
    "scope_not_grantable": _("You cannot give a key scopes you do not hold yourself: %(missing)s."),
    "unknown_role": _("“%(role)s” is not a role: choose one of %(roles)s."),
    # members (accounts.members)
    "invitation_required": _("No account “%(username)s” that you can add directly: only people who already share a "
                             "project with you can be added by username. Invite them by e-mail below; they join when "
                             "they accept."),
    "already_a_member": _("%(username)s is already a member: change their role in the list of members."),
    "last_owner": _("A project keeps at least one owner: make someone else owner first."),
    "expiry_in_past": _("The expiry %(when)s has already passed: choose a time to come, or never."),
    "expiry_too_far": _("The expiry %(when)s is more than %(days)s days away."),
    "key_name_too_long": _("A key's name has at most %(limit)s characters (this one has %(length)s)."),
    # invitations (accounts.invitations)
    "invalid_email": _("“%(email)s” is not an e-mail address: give one like alex@example.com."),
    "already_member": _("%(email)s is the address of %(username)s, a member of this project already: change their "
                        "role in the list of members."),
    "invited_meanwhile": _("%(email)s was invited by someone else just now: see the list of invitations."),
    # webhook endpoints (webhooks.services, and webhooks.targets on the URL)
    "url_missing": _("Give the URL to deliver to, e.g. https://example.com/hooks/atelier."),
    "url_too_long": _("The URL is longer than %(limit)s characters."),
    "url_has_spaces": _("The URL contains spaces or control characters."),
    "url_unparsable": _("The URL cannot be read: %(error)s."),
    "url_not_http": _("Only http:// and https:// URLs can receive webhooks."),
    "url_has_credentials": _("A user name or password in the URL is not supported: receivers verify deliveries by "
                             "their signature."),
    "url_has_fragment": _("The URL must not have a #fragment."),
    "url_without_host": _("The URL has no host."),
    "host_name_invalid": _("The host name “%(host)s” is not a valid domain name."),
    "host_not_resolved": _("The host “%(host)s” cannot be found (%(error)s)."),
    "host_without_addresses": _("The host “%(host)s” has no addresses."),
    "address_not_public": _("The host “%(host)s” resolves to %(address)s, %(problem)s. Webhooks call public addresses "
                            "only.%(hint)s"),
    "dns_lookup_no_answer": _("The DNS lookup of “%(host)s” got no answer."),
    "dns_lookups_all_waiting": _("The DNS lookup of “%(host)s” could not start: %(limit)s earlier lookups are still "
                                 "waiting for the resolver."),
    "dns_lookup_timeout": _("The DNS lookup of “%(host)s” got no answer within %(limit)s s; nothing was saved. Try "
                            "again, or check the host name."),
    "unknown_event_types": _("Unknown event type: %(unknown)s. Subscribe to any of: %(events)s."),
    "secret_rotation_limit": _("%(count)s secrets rotated away still sign this endpoint's deliveries, the most there "
                               "can be; the first of them stops at %(until)s. Rotate again then, or now with “stop "
                               "the earlier secrets at once” (the current secret still signs for 24 hours)."),
    "webhook_limit_reached": _("A project has at most %(limit)s webhook endpoints: delete one first."),
    # why a webhook delivery failed or was not sent, why an endpoint was disabled (webhooks.delivery, in the
    # delivery log and the list of endpoints)
    "redirect_not_followed": _("Redirects are not followed (Location: %(location)s)."),
    "timed_out": _("Timed out after %(limit)s s."),
    "tls_error": _("TLS error: %(error)s"),
    "connection_failed": _("Could not connect: %(error)s"),
    "job_webhook_not_covered": _("Refused: the endpoint's URL changed to %(endpoint_url)s, which no longer covers the "
                                 "job's webhook %(target_url)s."),
    "lookup_timed_out": _("Timed out after %(limit)s s: %(cause)s"),
    "target_refused": _("Refused: %(cause)s"),
    "receiver_answered": _("The receiver answered HTTP %(status)s."),
    "not_sent_endpoint_disabled": _("Not sent: the endpoint is disabled. %(cause)s"),
    "attempt_unfinished": _("The last attempt did not finish: the worker making it stopped."),
    "disabled_by": _("Disabled by %(actor)s."),
    "disabled_after_failures": _("Disabled automatically: %(limit)s deliveries in a row failed every attempt. Last "
                                 "error: %(cause)s"),
}

#: Why webhooks may not call an address (``webhooks.targets.ADDRESS_PROBLEMS``), completing "resolves to 10.0.0.1, …"
ADDRESS_PROBLEMS = {
    "unspecified": _("an unspecified address"),
    "multicast": _("a multicast address"),
    "loopback": _("a loopback address"),
    "link_local": _("a link-local address (the cloud metadata service 169.254.169.254 is one)"),
    "private": _("a private address"),
    "reserved": _("a reserved address"),
    "not_global": _("not a publicly routable address"),
}


def _values(params: dict[str, Any]) -> dict[str, Any]:
    """A refusal's values as its words name them: a category by its name, an address's problem and a normalised
    reading of a regular expression in words, the reason within it (``cause``: a delivery refused for its URL's)."""
    values = dict(params)
    if isinstance(values.get("cause"), dict):
        inner = values["cause"]
        values["cause"] = words_for(inner.get("code"), inner.get("params"), str(inner.get("english", "")))
    if "category" in values:
        values["category"] = category_label(str(values["category"]))
    if "read_as" in values:
        values["read_as"] = (_(" (read as “%(read_as)s” on normalised text)") % {"read_as": values["read_as"]}
                             if values["read_as"] else "")
    if "problem" in values:
        values["problem"] = ADDRESS_PROBLEMS.get(str(values["problem"]), values["problem"])
    if isinstance(values.get("until"), datetime):
        values["until"] = date_format(localtime(values["until"]), "DATETIME_FORMAT")
    if "can_be_allowed" in values:
        values["hint"] = (_(" An operator can allow private addresses with "
                            "ATELIER_WEBHOOKS_ALLOW_PRIVATE_TARGETS=true.") if values["can_be_allowed"] else "")
    return values


def words_for(code: str | None, params: dict[str, Any] | None, english: str) -> str:
    """The refusal ``code`` with its ``params`` in the page's words; its ``english`` where no words are known here."""
    words = MESSAGES.get(code or "")
    if words is None:
        return english
    try:
        return str(words) % _values(params or {})
    except (KeyError, TypeError, ValueError):  # values that do not fit the words (a refusal changed since)
        return english


def in_page_words(error: ValidationError) -> str:
    """One refusal (a ``ValidationError`` of one message) as the page shows it."""
    return words_for(error.code, error.params, next(iter(error)))


def webhook_words(error) -> str:
    """A webhook service's refusal (``WebhookError``) as the page shows it."""
    return words_for(error.reason, error.params, error.message)


def scope_words(error) -> str:
    """A key asked for with scopes the owner lacks (``ScopeNotGrantable``) as the page shows it."""
    return words_for(error.code, {"missing": ", ".join(error.missing)}, str(error))


def coded_words(coded: dict, english: str) -> str:
    """A reason kept as a code and its values (a delivery's ``last_error_coded``, an endpoint's
    ``disabled_reason_coded``) as the page shows it; its ``english`` where it has no code (kept before codes were)."""
    return words_for((coded or {}).get("code"), (coded or {}).get("params"), english)


def category_of(error: ValidationError) -> str | None:
    """The category a threshold's refusal is about, whose inputs it marks."""
    return (error.params or {}).get("category") if error.code == "thresholds_out_of_order" else None
