"""Screening inputs and outputs: run the safety checks, then decide with the project's policy.

A report records every finding (category, score, which check, which field, which characters or
image region) and the decision: ``pass``, ``review`` or ``block``. Thresholds are per category;
the highest score of a category decides it, and the strictest category decides the whole.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Iterable

from atelier_sdk.safety import BlocklistTerm, Finding, PublishedContact, ScreenContext, Target
from atelier_plugins.safety.compiled_lists import compiled_lists

from atelier_platform.accounts.models import Project
from atelier_platform.moderation.checks import checks_not_screening, get_safety_checks
from atelier_platform.moderation.models import AllowKind, AllowlistEntry, BlocklistEntry, SafetyPolicy, default_thresholds

PASS, REVIEW, BLOCK = "pass", "review", "block"
_RANK = {PASS: 0, REVIEW: 1, BLOCK: 2}
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")


def policy_for(project: Project, *, fresh: bool = False) -> SafetyPolicy:
    """The project's policy, created with the defaults on first use. No query when the project was
    read with ``select_related("safety_policy")`` (API-key requests, claimed jobs), unless ``fresh``."""
    policy = None if fresh else Project.safety_policy.related.get_cached_value(project, default=None)
    if policy is None:
        policy, _ = SafetyPolicy.objects.get_or_create(project=project)
    return policy


def collect_texts(value: Any, path: str) -> list[tuple[str, str]]:
    """Every string inside a JSON value with its path (``input.messages.2.content``)."""
    if isinstance(value, str):
        return [(path, value)] if value.strip() else []
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in collect_texts(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [pair for index, item in enumerate(value) for pair in collect_texts(item, f"{path}.{index}")]
    return []


#: Bytes one read list's terms hold, beyond their characters: a ``BlocklistTerm`` (a pydantic model) or a
#: ``PublishedContact``, a tuple slot (tracemalloc: about 545 bytes a blocklist term).
_BYTES_PER_TERM = 560


def _read_terms_bytes(values: Iterable[str]) -> int:
    count = chars = 0
    for value in values:
        count += 1
        chars += len(value)
    return count * _BYTES_PER_TERM + chars


def screen_context(project: Project, policy: SafetyPolicy) -> ScreenContext:
    """The project's blocklist as one tuple, read again only when the policy's ``blocklist_revision``
    moved (the database bumps it on every change to the list). The check caches its compiled
    automaton by the tuple, so an unchanged list is never read, hashed or compiled again: screening
    with a policy in hand costs no query. The allow list the same way, by ``allowlist_revision``.

    The lists read are kept in the process's cache of compiled lists, under its one budget in bytes: a
    project that has not screened for a while is read again (one query), rather than every project's
    lists staying in every process for good. Their terms count twice while their compiled forms are
    kept too (the compiled form counts the terms it keeps): the budget is an upper bound."""
    signature = (policy.pk, policy.blocklist_revision)
    cached = compiled_lists.get(("project blocklist", project.pk))
    if cached is None or cached[0] != signature:
        terms = tuple(
            BlocklistTerm(pattern=e.pattern, is_regex=e.is_regex, category=e.category)
            for e in BlocklistEntry.objects.filter(project=project).only("pattern", "is_regex", "category").order_by("id")
        )
        cached = (signature, terms)
        compiled_lists.put(("project blocklist", project.pk), cached, _read_terms_bytes(t.pattern for t in terms))
    signature = (policy.pk, policy.allowlist_revision)
    allowed = compiled_lists.get(("project allow list", project.pk))
    if allowed is None or allowed[0] != signature:
        rows = AllowlistEntry.objects.filter(project=project).values_list("kind", "normalised").order_by("id")
        terms, contacts = [], []
        for kind, normalised in rows:
            if kind == AllowKind.TERM:
                terms.append(normalised)
            else:
                contacts.append(PublishedContact(kind=kind, value=normalised))
        allowed = (signature, tuple(terms), tuple(contacts))
        compiled_lists.put(("project allow list", project.pk), allowed,
                           _read_terms_bytes([*terms, *(contact.value for contact in contacts)]))
    return ScreenContext(blocklist=cached[1], options={"project": project.slug},
                         allowed_terms=allowed[1], published_contacts=allowed[2])


def forget_blocklists() -> None:
    """Drop every read and compiled blocklist and allow list of this process (tests: row ids are reused after a
    rollback)."""
    compiled_lists.clear()


def _finding_json(finding: Finding, field: str) -> dict[str, Any]:
    return {
        "category": finding.category.value,
        "score": round(float(finding.score), 4),
        "check": finding.check,
        "field": field,
        "evidence": [{k: v for k, v in asdict(e).items() if v not in (None, "")} for e in finding.evidence],
    }


#: A category a policy saved before it existed (or a check's own) is judged by its default thresholds.
_DEFAULT_THRESHOLDS = default_thresholds()


def decide(policy: SafetyPolicy, scores: dict[str, float]) -> tuple[str, list[str]]:
    """The decision and the categories at or above their review threshold."""
    decision, flagged = PASS, []
    for category, score in scores.items():
        limits = policy.thresholds.get(category) or _DEFAULT_THRESHOLDS.get(category) or _DEFAULT_THRESHOLDS["custom"]
        verdict = BLOCK if score >= limits["block"] else REVIEW if score >= limits["review"] else PASS
        if verdict != PASS:
            flagged.append(category)
        if _RANK[verdict] > _RANK[decision]:
            decision = verdict
    return decision, sorted(flagged)


def screen(
    project: Project,
    target: Target,
    texts: Iterable[tuple[str, str]] = (),
    images: Iterable[tuple[str, bytes]] = (),
    *,
    policy: SafetyPolicy | None = None,
) -> dict[str, Any]:
    policy = policy or policy_for(project)
    texts, images = list(texts), list(images)
    context = screen_context(project, policy)
    findings: list[dict[str, Any]] = []
    checked_by = []
    for check in get_safety_checks():
        manifest = check.manifest
        if target not in manifest.targets:
            continue
        checked_by.append(manifest.id)
        if texts and "text" in manifest.modalities:
            for (field, _), found in zip(texts, check.check_texts([t for _, t in texts], context)):
                findings.extend(_finding_json(f, field) for f in found)
        if images and "image" in manifest.modalities:
            for (field, _), found in zip(images, check.check_images([b for _, b in images], context)):
                findings.extend(_finding_json(f, field) for f in found)
    scores: dict[str, float] = {}
    for finding in findings:
        scores[finding["category"]] = max(scores.get(finding["category"], 0.0), finding["score"])
    decision, flagged = decide(policy, scores)
    report = {"target": target.value, "decision": decision, "flagged": flagged, "scores": scores,
              "findings": findings, "checked_by": checked_by}
    modalities = ({"text"} if texts else set()) | ({"image"} if images else set())
    missing = checks_not_screening(target.value, modalities) if modalities else []
    if missing:
        # Said in the report, and an output so screened is never released without a person.
        report["not_checked_by"] = missing
    return report


def mask_personal_data(content: Any, findings: list[dict[str, Any]], root: str = "content") -> Any:
    """``content`` with every personal-data span that screening found replaced by a placeholder."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for finding in findings:
        if finding["category"] != "personal_data":
            continue
        for evidence in finding["evidence"]:
            if "start" in evidence and "end" in evidence:
                spans.setdefault(finding["field"], []).append((evidence["start"], evidence["end"]))

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, str) and path in spans:
            for start, end in sorted(set(spans[path]), reverse=True):
                value = value[:start] + "[personal data]" + value[end:]
            return value
        if isinstance(value, dict):
            return {k: walk(v, f"{path}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(value)]
        return value

    return walk(content, root)
