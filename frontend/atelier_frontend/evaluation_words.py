"""A refused reference-set upload in the page's language: each line of the file and its column (or field) that
was refused, and why.

The platform refuses in English (``evaluation.uploads.UploadRefused``: a stable reason and its values;
``services.checked_cases``: details by case and field, with pydantic's errors behind them). Here each is said
in the page's words: the file's own problems by their reason, a case's by its line (``Upload.lines``) and its
CSV column, pydantic's messages as the job forms show them (``field_errors``), the service's own by their stable
code (``CASE_ERRORS``). A message not known here keeps its English.
"""

from __future__ import annotations

from django.utils.translation import gettext, gettext_lazy as _, ngettext

from atelier_frontend.field_errors import MESSAGES, shown_details

#: ``UploadRefused.reason`` → the message in the page's language, with the refusal's params
UPLOAD_REASONS = {
    "too_large": _("The file is too large: at most %(limit_mib)s MiB."),
    "file_type": _("Upload a .csv or a .jsonl (JSON Lines) file."),
    "not_utf8": _("The file is not UTF-8 text (line %(line)s): save it as UTF-8 (in a spreadsheet, as “CSV UTF-8”)."),
    "empty": _("The file is empty."),
    "no_cases": _("The file has no cases (only its header, or blank lines)."),
    "nul": _("Line %(line)s holds a NUL character."),
    "csv_not_for_plugin": _("A CSV file is read for the chatbot and recommender copy; for %(plugin)s, upload JSON Lines."),
    "too_many_cases": _("At most %(limit)s cases per reference set; this file has %(count)s."),
    "not_csv": _("Line %(line)s is not CSV."),
    "not_json": _("Line %(line)s is not JSON."),
    "cell_count": _("Line %(line)s has %(cells)s cells where the first line names %(columns)s columns."),
    "zip_for_images": _("For an image set, upload a .zip holding cases.csv or cases.jsonl and the images."),
    "not_zip": _("The file is not a ZIP archive that can be read."),
    "zip_members": _("The archive holds %(count)s files; at most %(limit)s."),
    "zip_cases_file": _("The archive needs one cases.csv or cases.jsonl beside its images."),
    "zip_unsafe_name": _("The archive holds an unsafe file name: %(name)s."),
    "zip_member_unreadable": _("%(name)s cannot be read from the archive."),
    "zip_too_large": _("The archive inflates to more than %(limit_mib)s MiB."),
    "zip_member_too_large": _("%(name)s is larger than %(limit_mib)s MiB."),
    "zip_missing_image": _("Line %(line)s: no file %(name)s in the archive."),
    "list_cell": _("Line %(line)s, %(column)s: a cell that starts with [ is a JSON list, such as [\"a\", \"b\"]; else "
                   "separate the names with |."),
}

def _names(ctx: dict):
    if not isinstance(ctx.get("names"), str):
        return None
    if isinstance(ctx.get("field"), str):  # a plugin that takes another kind of reference
        return (gettext("Unknown fields: %(names)s (a case has input, params and reference, and may have %(field)s and "
                        "k)."), {"names": ctx["names"], "field": ctx["field"]})
    return gettext("Unknown fields: %(names)s (a case has input, params and reference)."), {"names": ctx["names"]}


def _with(message, *names, kinds=(str,)):
    """A refusal worded with its values from ctx, when each is there and of the kind expected (else its English)."""
    def words(ctx: dict):
        if not all(type(ctx.get(name)) in kinds for name in names):
            return None
        return str(message), {name: ctx[name] for name in names}  # a lazy message: in the page's language now
    return words


def _longest(ctx: dict):
    return (gettext("At most %(max_length)s characters."), {"max_length": ctx["max_length"]}) \
        if type(ctx.get("max_length")) is int else None


#: the case checker's own refusals (``services._case_errors``) by their stable code, each as (the message in the
#: page's language, its values) from the error's ctx, as ``field_errors.MESSAGES`` words pydantic's; a code not here
#: (or a ctx not as expected) keeps the API's English
CASE_ERRORS = {
    **MESSAGES,
    "evaluation.case_not_object": lambda ctx: (gettext("A case is an object with input, reference and optional params."), {}),
    "evaluation.unknown_fields": _names,
    "evaluation.reference_blank": lambda ctx: (gettext("The expected answer, a non-empty text."), {}),
    "evaluation.reference_too_long": _longest,
    "evaluation.nul_character": lambda ctx: (gettext("The NUL character is not allowed."), {}),
    "evaluation.not_object": lambda ctx: (gettext("An object."), {}),
    "evaluation.conversation_id_in_case": lambda ctx: (gettext("A case is self-contained: put its turns in messages."), {}),
    "evaluation.image_not_base64": lambda ctx: (gettext("The expected image: a PNG or JPEG file."), {}),
    "evaluation.image_not_an_image": lambda ctx: (gettext("Not a PNG or JPEG image that can be read."), {}),
    "evaluation.image_too_large": lambda ctx: (gettext("The image is larger than %(limit_mib)s MiB."),
                                               {"limit_mib": ctx["limit_mib"]}) if type(ctx.get("limit_mib")) is int else None,
    "evaluation.image_too_many_pixels": lambda ctx: (
        gettext("The image has %(width)sx%(height)s pixels; at most %(limit)s in all."),
        {name: ctx[name] for name in ("width", "height", "limit")}) if all(
            type(ctx.get(name)) is int for name in ("width", "height", "limit")) else None,
    "evaluation.image_set_too_many_pixels": lambda ctx: (
        gettext("The new images hold more than %(limit)s pixels together: upload fewer or smaller images at a time."),
        {"limit": ctx["limit"]}) if type(ctx.get("limit")) is int else None,
    "evaluation.image_unknown_image": lambda ctx: (
        gettext("No image of this set has that sha256: send the image itself, as base64."), {}),
    "evaluation.reference_missing": _with(_("The expected answer, a non-empty text, or %(field)s: a case needs at least "
                                            "one reference."), "field"),
    "evaluation.reference_items_type": _with(_("A non-empty list of item ids, or an object of item ids and their gains "
                                               "({\"id\": 2}).")),
    "evaluation.reference_items_empty": _with(_("Name at least one relevant item.")),
    "evaluation.reference_items_too_many": _with(_("At most %(limit)s relevant items (a case has at most %(limit)s "
                                                   "candidates)."), "limit", kinds=(int,)),
    "evaluation.reference_item_not_id": _with(_("An item id (a text).")),
    "evaluation.reference_item_unknown": _with(_("No candidate item of this case has the id %(id)s: name one of the "
                                                 "case's input items."), "id"),
    "evaluation.reference_item_repeated": _with(_("%(id)s is named twice."), "id"),
    "evaluation.reference_item_gain": _with(_("A gain: a number above 0, at most %(max_gain)s."), "max_gain", kinds=(int,)),
    "evaluation.reference_sources_type": _with(_("A non-empty list of knowledge-base document ids or titles.")),
    "evaluation.reference_sources_too_many": _with(_("At most %(limit)s documents."), "limit", kinds=(int,)),
    "evaluation.reference_sources_without_knowledge": _with(_(
        "This case does not use the knowledge base (use_knowledge is false): it retrieves no sources to score.")),
    "evaluation.reference_source_not_text": _with(_("A document's id or title (a text).")),
    "evaluation.reference_source_ambiguous": lambda ctx: (
        gettext("%(count)s documents have the title %(title)s: name the one meant by its id."),
        {"count": ctx["count"], "title": ctx["title"]}) if type(ctx.get("count")) is int and isinstance(
            ctx.get("title"), str) else None,
    "evaluation.reference_source_unknown": _with(_("The project's knowledge base has no document with the id or title "
                                                   "%(name)s."), "name"),
    "evaluation.reference_source_repeated": _with(_("%(id)s is named twice."), "id"),
    "evaluation.k_range": _with(_("A whole number from 1 to %(limit)s: the cut-off of the ranking or retrieval "
                                  "metrics."), "limit", kinds=(int,)),
    "evaluation.k_without_reference": _with(_("k is the cut-off of the metrics of %(field)s: give %(field)s too, or "
                                              "leave k out."), "field"),
}


def _columns_words(params: dict) -> str:
    words = gettext("The first line names the columns: %(required)s (required)") % params
    if params.get("optional"):
        words += gettext("; %(optional)s (optional)") % params
    words += "."
    for key, said in (("missing", gettext("Missing: %(names)s.")), ("unknown", gettext("Unknown: %(names)s.")),
                      ("repeated", gettext("Repeated: %(names)s."))):
        if params.get(key):
            words += " " + said % {"names": params[key]}
    return words


def _reason_words(refusal) -> str:
    if refusal.reason == "columns":
        return _columns_words(refusal.params)
    words = UPLOAD_REASONS.get(refusal.reason)
    try:
        return str(words) % refusal.params if words else refusal.message
    except (KeyError, TypeError, ValueError):
        return refusal.message


def upload_refusal_words(error) -> list[str]:
    """The messages of a refused upload (``UploadRefused``, or the service's refusal of its cases carrying
    ``upload``), in the page's language; at most ``MAX_LINE_ERRORS`` lines and a count of the rest."""
    from atelier_platform.evaluation.uploads import MAX_LINE_ERRORS, UploadRefused, case_lines

    if isinstance(error, UploadRefused):
        if error.reason != "bad_lines":
            return [_reason_words(error)]
        said = [_reason_words(problem) for problem in error.problems]
        rest = error.params.get("lines", len(said)) - len(said)
        if rest > 0:
            said.append(ngettext("… and %(n)s more line.", "… and %(n)s more lines.", rest) % {"n": rest})
        return said
    upload = getattr(error, "upload", None)
    details = shown_details(error, CASE_ERRORS) if isinstance(getattr(error, "details", None), dict) else {}
    if upload is None or getattr(error, "code", "") == "limit_exceeded" or not any(
            key.startswith("cases.") for key in details):
        return []  # not about the file's cases: the caller says it as any other refusal
    said, lines = [], case_lines(upload, details)
    for line, where, text in lines[:MAX_LINE_ERRORS]:
        said.append(gettext("Line %(line)s, %(field)s: %(message)s") % {"line": line, "field": where, "message": text}
                    if where else gettext("Line %(line)s: %(message)s") % {"line": line, "message": text})
    if len(lines) > MAX_LINE_ERRORS:
        rest = len(lines) - MAX_LINE_ERRORS
        said.append(ngettext("… and %(n)s more problem.", "… and %(n)s more problems.", rest) % {"n": rest})
    return said
