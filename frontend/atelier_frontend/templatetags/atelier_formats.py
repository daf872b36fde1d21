"""``{% load atelier_formats %}``: ``{{ job.created_at|ago }}``, ``{{ count|number }}`` (see ``formats.py``), and a
job's status cell: ``{{ job|status_badges }}`` and ``{{ job|progress_line }}`` (see ``job_states.py``)."""

from django import template

from atelier_frontend import formats, job_states

register = template.Library()
register.filter("ago", formats.ago)
register.filter("number", formats.number)
register.filter("status_badges", job_states.badges)
register.filter("progress_line", job_states.progress_line)


@register.filter
def errors_for(errors: dict, name: str) -> list:
    """``{{ invalid|errors_for:name }}``: the errors of the input ``name`` (one not a template identifier:
    ``review:violence``)."""
    return errors.get(name, []) if isinstance(errors, dict) else []
