"""Names in the page's language for what the platform and its plugins know by a code: reject reasons
(``off_brand``), safety categories (``self-harm``), the built-in plugins' names, field titles and
descriptions, and their fields' fixed choices (a tone ``friendly``, a language ``zh``).

The codes stay what the API, exports and the reviewers' keys speak; only what a page shows changes.
Plugins know nothing of Django (DESIGN.md), so their schemas carry English only: the dashboard translates
the built-in plugins' words here, by their English, under the context ``plugin``. A third-party plugin's
words show as its author wrote them, unless they are the same English as a built-in's; a built-in
plugin whose English changes shows the new English until it is translated here (a test holds them level).
A project's own reject reasons are its own words, shown as written.

A fixed choice (a schema's ``enum`` or ``const``) is named by the property that offers it and its value, as the
value alone is ambiguous ("en" a language, "stop" why a reply ended); the value stays what forms send and the API
keeps. A third-party plugin's choice shows as its value, unless its property and value are a built-in's.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
# under another name: plugin_words looks up the words it is given, which the catalogue's extractor must not
# take for a message of its own
from django.utils.translation import pgettext as translated_in_context

#: The platform's default reject reasons (moderation.models.DEFAULT_REJECT_REASONS).
REJECT_REASONS = {
    "unsafe": _("Unsafe"),
    "off_brand": _("Off brand"),
    "factually_wrong": _("Factually wrong"),
    "low_quality": _("Low quality"),
    "other": _("Other reason"),
}

#: The safety categories (atelier_sdk.safety.Category).
SAFETY_CATEGORIES = {
    "sexual": _("Sexual content"),
    "sexual/minors": _("Sexual content involving minors"),
    "hate": _("Hate"),
    "harassment": _("Harassment"),
    "violence": _("Violence"),
    "self-harm": _("Self-harm"),
    "illicit": _("Illicit activity"),
    "personal_data": _("Personal data"),
    "prompt_injection": _("Prompt injection"),
    "spam": _("Spam or off-brand"),
    "custom": _("Project blocklist"),
}


#: the plugin's own default model, where a project pins no version: never "default" alone, which reads as the name of
#: a version (no version may take it: ``catalog.models.DEFAULT_MODEL_NAME``, what provenance and a run's
#: ``model_versions`` call it)
UNPINNED_MODEL = _("the plugin's default model (not pinned)")


def answering_model_label(name: str) -> str:
    """A model named by an output's provenance or a run's ``model_versions``: a version's name, or the default."""
    from atelier_platform.catalog.models import DEFAULT_MODEL_NAME

    return str(UNPINNED_MODEL) if name == DEFAULT_MODEL_NAME else name


def reject_reason_label(reason: str) -> str:
    """A reject reason as a reviewer reads it: a default reason translated, a project's own as written."""
    label = REJECT_REASONS.get(reason)
    return str(label) if label is not None else reason


def category_label(category: str) -> str:
    """A safety category in words; a category not known here (a third-party check's) as its code."""
    label = SAFETY_CATEGORIES.get(category)
    return str(label) if label is not None else category


PLUGIN_CONTEXT = "plugin"

#: The built-in plugins' words (manifest name and description; input, params and output field titles; input and
#: params field descriptions), marked here for the catalogue; ``plugin_words`` looks any plugin's English up.
BUILT_IN_PLUGIN_WORDS = [
    # chatbot
    pgettext_lazy("plugin", "Customer-service chatbot"),
    pgettext_lazy("plugin", "Answers customers from the project's knowledge base: retrieves the closest passages, then "
                            "generates a reply with a causal language model, citing its sources."),
    pgettext_lazy("plugin", "Messages"),
    pgettext_lazy("plugin", "The conversation so far, oldest first; the last one is the user's."),
    pgettext_lazy("plugin", "Conversation Id"),
    pgettext_lazy("plugin", "Continue this stored conversation (a UUID); the platform keeps the thread."),
    pgettext_lazy("plugin", "Use Knowledge"),
    pgettext_lazy("plugin", "Answer from the project's knowledge base."),
    pgettext_lazy("plugin", "Top K"),
    pgettext_lazy("plugin", "How many knowledge-base passages to retrieve."),
    pgettext_lazy("plugin", "Max New Tokens"),
    pgettext_lazy("plugin", "Longest reply, in tokens."),
    pgettext_lazy("plugin", "Temperature"),
    pgettext_lazy("plugin", "0 answers greedily (deterministic)."),
    pgettext_lazy("plugin", "Top P"),
    pgettext_lazy("plugin", "Nucleus sampling mass."),
    pgettext_lazy("plugin", "Seed"),
    pgettext_lazy("plugin", "Same seed, same reply."),
    pgettext_lazy("plugin", "Stop"),
    pgettext_lazy("plugin", "The reply ends before the first of these strings."),
    pgettext_lazy("plugin", "Reply"),
    pgettext_lazy("plugin", "Sources"),
    pgettext_lazy("plugin", "Usage"),
    pgettext_lazy("plugin", "Finish Reason"),
    # image
    pgettext_lazy("plugin", "Text to image"),
    pgettext_lazy("plugin", "Makes images from a text prompt with a diffusers text-to-image pipeline (Stable "
                            "Diffusion or any compatible checkpoint). PNG files with a thumbnail, generation metadata "
                            "and an embedded AI-generated label."),
    pgettext_lazy("plugin", "Prompt"),
    pgettext_lazy("plugin", "What the image should show."),
    pgettext_lazy("plugin", "Negative Prompt"),
    pgettext_lazy("plugin", "What the image should not show (models that support it; needs guidance above 1)."),
    pgettext_lazy("plugin", "Width"),
    pgettext_lazy("plugin", "Image width in pixels, a multiple of 8. Empty: the model's native size (512 for Stable "
                            "Diffusion 1.x, 1024 for SDXL, 32 for the demo digits model)."),
    pgettext_lazy("plugin", "Height"),
    pgettext_lazy("plugin", "Image height in pixels, a multiple of 8. Empty: the model's native size."),
    pgettext_lazy("plugin", "Steps"),
    pgettext_lazy("plugin", "Denoising steps: more is slower and often finer."),
    pgettext_lazy("plugin", "Guidance"),
    pgettext_lazy("plugin", "Classifier-free guidance scale: how closely to follow the prompt (1 or less turns it "
                            "off)."),
    pgettext_lazy("plugin", "Same seed, same images. Image i uses seed + i. Empty: the job's own seed. A regeneration "
                            "from the review queue draws new images from its job's own seed."),
    pgettext_lazy("plugin", "Count"),
    pgettext_lazy("plugin", "How many images to make."),
    pgettext_lazy("plugin", "Index"),
    pgettext_lazy("plugin", "Prompt Sha256"),
    pgettext_lazy("plugin", "Negative Prompt Sha256"),
    pgettext_lazy("plugin", "Model Version"),
    pgettext_lazy("plugin", "Prompt truncated"),
    pgettext_lazy("plugin", "Negative prompt truncated"),
    pgettext_lazy("plugin", "Label"),
    pgettext_lazy("plugin", "Model Safety Flagged"),
    # recommender_copy
    pgettext_lazy("plugin", "Recommendations with personalised copy"),
    pgettext_lazy("plugin", "Ranks candidate items for a shopper's profile by semantic match, with diversity, and "
                            "writes personalised copy for the top items in several variants, within the brand voice, "
                            "length limit and banned words; copy never states a number the item's data lacks."),
    pgettext_lazy("plugin", "Profile"),
    pgettext_lazy("plugin", "Items"),
    pgettext_lazy("plugin", "candidate items to rank"),
    pgettext_lazy("plugin", "how many items to recommend"),
    pgettext_lazy("plugin", "Variants"),
    pgettext_lazy("plugin", "copy variants per recommended item"),
    pgettext_lazy("plugin", "Tone"),
    pgettext_lazy("plugin", "Language"),
    pgettext_lazy("plugin", "Brand Voice"),
    pgettext_lazy("plugin", "how the brand speaks; given to the copywriter"),
    pgettext_lazy("plugin", "Banned Words"),
    pgettext_lazy("plugin", "never in the copy: case-insensitive, whole words for Latin scripts with their inflections "
                            "(cheap: cheaper, cheapest; guarantee: guaranteed; for words of 4 letters or more), "
                            "substrings for CJK"),
    pgettext_lazy("plugin", "Max Chars"),
    pgettext_lazy("plugin", "longest copy text, in characters"),
    pgettext_lazy("plugin", "Diversity"),
    pgettext_lazy("plugin", "0 ranks by relevance only; higher values avoid near-duplicate items (above 0, an item "
                            "identical to one already recommended comes only after all the others)"),
    pgettext_lazy("plugin", "same seed, same copy; overrides the job's seed, except in a regeneration from the review "
                            "queue"),
    pgettext_lazy("plugin", "Recommendations"),
    pgettext_lazy("plugin", "Profile Summary"),
]


def plugin_words(english: str) -> str:
    """A plugin's name, description, field title or field description in the page's language, where the
    catalogue has it (the built-in plugins'); else as the plugin wrote it."""
    return translated_in_context(PLUGIN_CONTEXT, english) if english else english


def field_title(name: str, prop: dict, root: dict) -> str:
    """What a plugin's schema calls a property (its ``title``, or its referenced model's), else the property's
    name in words (``max_chars``: "Max chars"); in English, for ``plugin_words``."""
    ref = prop.get("$ref", "")
    if ref.startswith("#/$defs/"):
        prop = {**root.get("$defs", {}).get(ref.split("/")[-1], {}), **{k: v for k, v in prop.items() if k != "$ref"}}
    return prop.get("title") or name.replace("_", " ").capitalize()


def field_labels(schema: dict) -> dict[str, str]:
    """Each top-level property of a JSON schema with its title in the page's language: ``{"max_chars": "最大字符数"}``."""
    return {name: plugin_words(field_title(name, prop if isinstance(prop, dict) else {}, schema))
            for name, prop in (schema.get("properties") or {}).items()}


#: The built-in plugins' fixed choices (the ``enum`` and ``const`` values of their input, params and output schemas) in
#: words, by the property that offers them and the value (a test holds them level with the schemas).
BUILT_IN_PLUGIN_CHOICES = {
    # chatbot: who wrote a message, why a reply ended
    ("role", "system"): pgettext_lazy("plugin", "System"),
    ("role", "user"): pgettext_lazy("plugin", "User"),
    ("role", "assistant"): pgettext_lazy("plugin", "Assistant"),
    ("finish_reason", "stop"): pgettext_lazy("plugin", "Finished"),
    ("finish_reason", "length"): pgettext_lazy("plugin", "Cut off at the length limit"),
    # image: the label every image carries
    ("label", "AI-generated"): pgettext_lazy("plugin", "AI-generated"),
    # recommender_copy: the copy's tone and language, how a copy variant was made
    ("tone", "friendly"): pgettext_lazy("plugin", "Friendly"),
    ("tone", "premium"): pgettext_lazy("plugin", "Premium"),
    ("tone", "playful"): pgettext_lazy("plugin", "Playful"),
    ("tone", "concise"): pgettext_lazy("plugin", "Concise"),
    ("language", "en"): pgettext_lazy("plugin", "English"),
    ("language", "zh"): pgettext_lazy("plugin", "Chinese"),
    ("source", "model"): pgettext_lazy("plugin", "Written by the model"),
    ("source", "edited"): pgettext_lazy("plugin", "The model's text, edited by the rules"),
    ("source", "template"): pgettext_lazy("plugin", "Built from the item's facts"),
}


def _choice_words(name: str, value: Any):
    try:
        return BUILT_IN_PLUGIN_CHOICES.get((name, value))
    except TypeError:  # an unhashable const (a list or an object): no words for it
        return None


def choice_label(name: str, value: Any) -> str:
    """A fixed choice of a plugin's property ``name`` in the page's language (``("tone", "friendly")``: "亲切"),
    else its value as it is."""
    label = _choice_words(name, value)
    return str(label) if label is not None else str(value)


def fixed_choices(schema: dict) -> dict[str, tuple[str, list]]:
    """Where a JSON schema offers fixed choices: each place's path from the top, a list's items as ``*``
    (``"tone"``, ``"messages.*.role"``, ``"recommendations.*.copy.*.source"``), with the property there and
    its values."""
    found: dict[str, tuple[str, list]] = {}
    definitions = schema.get("$defs") or {}

    def walk(node, path: list[str], seen: frozenset) -> None:
        if not isinstance(node, dict):
            return
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            if ref in seen:  # a model that holds itself: its choices were found the first time round
                return
            node, seen = {**definitions.get(ref.split("/")[-1], {}), **node}, seen | {ref}
        values = node["enum"] if isinstance(node.get("enum"), list) else [node["const"]] if "const" in node else []
        if values and path:
            found[".".join(path)] = (path[-1], values)
        for branch in [*(node.get("anyOf") or []), *(node.get("oneOf") or []), *(node.get("allOf") or [])]:
            walk(branch, path, seen)
        for name, inner in (node.get("properties") or {}).items():
            walk(inner, [*path, name], seen)
        if isinstance(node.get("items"), dict):
            walk(node["items"], [*path, "*"], seen)

    walk(schema, [], frozenset())
    return found


def choice_labels(schema: dict) -> dict[str, dict[Any, str]]:
    """The fixed choices of a JSON schema that have words here, by where they are (``fixed_choices``):
    ``{"tone": {"friendly": "亲切", ...}}``, for ``rendering.render_value`` to show a value in words."""
    labels: dict[str, dict[Any, str]] = {}
    for path, (name, values) in fixed_choices(schema).items():
        named = {value: choice_label(name, value) for value in values if _choice_words(name, value) is not None}
        if named:
            labels[path] = named
    return labels
