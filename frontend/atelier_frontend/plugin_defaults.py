"""The settings page's form of a plugin's default params (the recommender's brand voice and banned words, the
chatbot's reply length...), generated from the plugin's params JSON Schema as the create page's form is
(``schema_form``), and saved through the catalog's service, which checks them as the API does.

Unlike the create page's form, a field left empty sets no default (the plugin's own applies): so nothing is filled
in from the schema's defaults, and a flag is a choice of three (the plugin's default, yes, no) rather than a
checkbox, which could not say "no default"."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from atelier_frontend import schema_form
from atelier_frontend.field_errors import shown_details

#: the flag choices' values as the form posts them ("" is the plugin's own default)
FLAGS = {"true": True, "false": False}


@dataclass
class DefaultsForm:
    plugin_id: str
    fields: list[schema_form.Field]
    saved: list[str]  # the names of the defaults set
    stale: list[str]  # saved defaults the plugin no longer names (jobs refuse them): saving the form drops them
    # saved defaults above a cap lowered since (``ATELIER_MAX_NEW_TOKENS``...): each job left to them is refused
    # ``limit_exceeded``, each a sentence in the page's language
    over_caps: list[str] = field(default_factory=list)
    refused: bool = False


class DefaultsRefused(ValidationError):
    """The form was refused: ``form`` holds it as it was typed, each error on its field, to show again."""

    def __init__(self, message: str, form: DefaultsForm) -> None:
        super().__init__(message)
        self.form = form


def defaults_form(plugin, saved: dict) -> DefaultsForm:
    """The form of ``plugin``'s default params, showing those ``saved``."""
    fields = schema_form.fields_for({"input_schema": {}, "params_schema": plugin.params_schema()})
    for f in fields:
        f.required = False  # a default is never required: empty is the plugin's own
        if f.kind == "messages":  # (a chat transcript as a default: its JSON, as the API takes it)
            f.kind, f.example = "json", '[{"role": "user", "content": "…"}]'
        f.value = ""
        # what an empty field means, shown in it
        f.placeholder = shown_value(f.default) if f.default not in (None, "", [], {}) else ""
    schema_form.prefill(fields, {}, saved)
    known = {f.name.split(".", 1)[1] for f in fields}
    return DefaultsForm(plugin.manifest.id, fields, sorted(name for name in saved if name in known),
                        sorted(name for name in saved if name not in known), over_caps(plugin, saved))


def over_caps(plugin, saved: dict) -> list[str]:
    """The saved defaults above this server's caps now, each said as ``max_new_tokens (at most 64 on this server,
    ATELIER_MAX_NEW_TOKENS)``: the form's checks refuse such a default, so it was saved before the cap was lowered."""
    from atelier_platform.usage import limits

    return [_("%(field)s (at most %(cap)s on this server, %(setting)s)")
            % {"field": excess.where.removeprefix("params."), "cap": excess.cap_shown, "setting": excess.setting}
            for excess in limits.excesses(plugin.manifest.id, {}, saved) if excess.where.startswith("params.")]


def read_defaults(form: DefaultsForm, posted) -> dict | None:
    """The defaults the posted form sets (the fields not left empty), or None with each unreadable field's error
    on it."""
    flags = [f for f in form.fields if f.kind == "boolean"]
    _input, defaults, ok = schema_form.parse([f for f in form.fields if f.kind != "boolean"], posted)
    for f in flags:
        f.value = posted.get(f.name, "")
        if f.value in FLAGS:
            defaults[f.name.split(".", 1)[1]] = FLAGS[f.value]
            f.value = FLAGS[f.value]
        elif f.value:
            ok = False
            f.errors.append(_("Choose one of the options."))
    return defaults if ok else None


def save_defaults(project, actor, plugin, saved: dict, posted) -> str:
    """Save the posted form as the project's default params of ``plugin`` (all of them, or none on any error);
    answers the notice. Refused: ``DefaultsRefused``, with the form's errors beside their fields in the page's
    language."""
    from atelier_platform.catalog.configuration import configure_plugin
    from atelier_platform.jobs.errors import InvalidJobInput

    form = defaults_form(plugin, saved)
    form.refused = True
    defaults = read_defaults(form, posted)
    if defaults is None:
        raise DefaultsRefused(_("Correct the fields marked below."), form)
    try:
        configured = configure_plugin(project, plugin.manifest.id, actor, defaults=defaults)
    except InvalidJobInput as error:
        # the service names fields from "defaults" (the API's body); the form's fields are "params.<name>"
        by_field = {"params" + location[len("defaults"):] if location.startswith("defaults.") else location: messages
                    for location, messages in shown_details(error).items()}
        unplaced = schema_form.attach_errors(form.fields, by_field)
        raise DefaultsRefused(" ".join([_("Correct the fields marked below."), *unplaced]), form) from None
    name = plugin.manifest.name
    if "defaults" not in configured.changed:
        return _("%(plugin)s: nothing changed.") % {"plugin": name}
    return _("Default params of %(plugin)s saved: jobs submitted from now on start from them, and a caller's own "
             "params still win.") % {"plugin": name}


def shown_value(value) -> str:
    """A saved default as the form shows it in its hint (the plugin's own default: ``220``, ``[]``)."""
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
