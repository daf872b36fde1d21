"""Times that callers give (query parameters, form fields) as moments the database can compare.

Python reads offsets up to ±23:59 and years up to 9999 in any offset; PostgreSQL refuses an offset beyond
±15:59 ("time zone displacement out of range") and 9999-12-31T23:00-05:00 is past the last year either
holds, once in UTC. Given to a query as they came, such times made the request fail with a 500. Each time is
therefore converted to UTC where it is read, and one that has no UTC instant is refused there, with a 400.
"""

from __future__ import annotations

import datetime

import django_filters
import django_filters.fields
from django import forms
from django.utils import timezone
from django.utils.dateparse import parse_datetime


def in_utc(value: datetime.datetime) -> datetime.datetime | None:
    """``value`` (aware) as the same moment in UTC, or None where that moment lies outside the years 1-9999."""
    try:
        return value.astimezone(datetime.timezone.utc)
    except (OverflowError, ValueError):
        return None


def parse_instant(raw: str) -> datetime.datetime | None:
    """An ISO 8601 time with its offset, in UTC; None where ``raw`` names no one moment (not a time, a day that
    does not exist, no offset, or beyond the years UTC can hold)."""
    try:
        value = parse_datetime(raw)
    except ValueError:  # well formed, but no such time (February 30th, hour 25)
        return None
    if value is None or value.tzinfo is None:
        return None
    return in_utc(value)


class InstantField(django_filters.fields.IsoDateTimeField):
    """django-filter's ISO 8601 field, whose value reaches the query in UTC; a time without an offset is read in
    the server's time zone, as before."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        if timezone.is_naive(value):
            value = timezone.make_aware(value)
        converted = in_utc(value)
        if converted is None:
            raise forms.ValidationError("This time lies beyond the years 1 to 9999 once in UTC.", code="out_of_range")
        return converted


class InstantFilter(django_filters.IsoDateTimeFilter):
    field_class = InstantField


__all__ = ["InstantField", "InstantFilter", "in_utc", "parse_instant"]
