"""``{% load atelier_formats %}``: ``{{ job.created_at|ago }}``, ``{{ count|number }}`` (see ``formats.py``)."""

from django import template

from atelier_frontend import formats

register = template.Library()
register.filter("ago", formats.ago)
register.filter("number", formats.number)
