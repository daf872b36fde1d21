"""``{% load atelier_labels %}``: ``{{ category|category_label }}`` and ``{{ reason|reject_reason_label }}``, a safety
category's or a reject reason's code in the page's language (see ``labels.py``)."""

from django import template

from atelier_frontend import labels

register = template.Library()
register.filter("category_label", labels.category_label)
register.filter("reject_reason_label", labels.reject_reason_label)
