"""Cursor pages of the API's lists: keyset pagination over the whole ordering.

DRF's ``CursorPagination`` keeps only the first ordering field in its cursor and counts an offset
among the items that share its value. When items leave a list between two pages, that offset
skips as many others: a reviewer deciding the pending review queue page by page (all of one
priority) never saw a third of it. Here a cursor holds every ordering field of the item a page
ends (or starts) with, and the next page begins strictly after it in the whole ordering, so
items added or removed elsewhere never shift a page. Every ordering ends in a unique field.
"""

from __future__ import annotations

import datetime
import json
import uuid
from decimal import Decimal

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination, _reverse_ordering
from rest_framework.utils.urls import remove_query_param, replace_query_param


def _position_value(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    return value


class SafeCursorPagination(CursorPagination):
    """Keyset cursor pages (see the module). A cursor is the client's to send back unchanged; a forged
    one (not base64, not our JSON, a position that is not a date, a number or an id) is a bad ``cursor``
    parameter (400 naming it), not a database error. DRF answers 404 "Invalid cursor": the list exists, and
    a 404 reads as if it did not; what is wrong is one query parameter, as with any other filter."""

    invalid_cursor_message = ("Not a cursor of this list: send back the cursor of a next or previous link unchanged, "
                              "or leave it out to start from the beginning.")

    def invalid_cursor(self) -> ValidationError:
        return ValidationError({self.cursor_query_param: [self.invalid_cursor_message]})

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound:  # DRF's answer to a cursor it cannot decode
            raise self.invalid_cursor() from None
        if cursor is not None and cursor.position is None:
            # Every cursor these lists give holds a position (the first page has no cursor at all); one without
            # (``?cursor=%00``: base64 decoding skips what is not base64, leaving nothing) was not given here.
            raise self.invalid_cursor()
        return cursor

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return self._paginate(queryset, request, view)
        except (DjangoValidationError, ValueError, TypeError, OverflowError):
            raise self.invalid_cursor() from None

    def _paginate(self, queryset, request, view):
        self.request = request
        self.page_size = self.get_page_size(request)
        if not self.page_size:
            return None
        self.base_url = request.build_absolute_uri()
        self.ordering = self.get_ordering(request, queryset, view)
        self.cursor = self.decode_cursor(request)
        reverse = bool(self.cursor and self.cursor.reverse)
        position = self.cursor.position if self.cursor else None
        queryset = queryset.order_by(*(_reverse_ordering(self.ordering) if reverse else self.ordering))
        if position is not None:
            queryset = queryset.filter(self._beyond(self._values_of(position), reverse))
        results = list(queryset[: self.page_size + 1])
        self.page = results[: self.page_size]
        more = len(results) > self.page_size
        if reverse:
            self.page.reverse()
            self.has_next, self.has_previous = position is not None, more
        else:
            self.has_next, self.has_previous = more, position is not None
        self._position = position
        if (self.has_previous or self.has_next) and self.template is not None:
            self.display_page_controls = True
        return self.page

    def _beyond(self, values: list, reverse: bool) -> Q:
        """Items strictly after ``values`` in the ordering (before them, for a backward page)."""
        beyond, equal = Q(), Q()
        for field, value in zip(self.ordering, values):
            name = field.lstrip("-")
            descending = field.startswith("-") != reverse
            beyond |= equal & Q(**{f"{name}__{'lt' if descending else 'gt'}": value})
            equal &= Q(**{name: value})
        return beyond

    def _values_of(self, position: str) -> list:
        values = json.loads(position)
        if not isinstance(values, list) or len(values) != len(self.ordering) or any(
                isinstance(v, (dict, list)) or v is None for v in values):
            raise ValueError("not a position of this list")
        return values

    def _get_position_from_instance(self, instance, ordering):
        fields = [field.lstrip("-") for field in ordering]
        values = [instance[f] if isinstance(instance, dict) else getattr(instance, f) for f in fields]
        return json.dumps([_position_value(v) for v in values], separators=(",", ":"))  # ASCII, as a cursor must be

    def get_next_link(self):
        if not self.has_next:
            return None
        if not self.page:  # a backward page found nothing before its position: the list from its start
            return remove_query_param(self.base_url, self.cursor_query_param)
        return self.encode_cursor(Cursor(offset=0, reverse=False,
                                         position=self._get_position_from_instance(self.page[-1], self.ordering)))

    def get_previous_link(self):
        if not self.has_previous:
            return None
        position = self._get_position_from_instance(self.page[0], self.ordering) if self.page else self._position
        return self.encode_cursor(Cursor(offset=0, reverse=True, position=position))


class NewestFirstCursorPagination(SafeCursorPagination):
    """Stable pages while new jobs arrive: a cursor, not an offset."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class OldestFirstCursorPagination(SafeCursorPagination):
    """Logs read from the start (the audit log): by id, which only grows."""

    ordering = ("id",)
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500


class SourceIdCursorPagination(SafeCursorPagination):
    """Knowledge documents in the order of their names."""

    ordering = ("source_id", "id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ThreadCursorPagination(SafeCursorPagination):
    """A conversation's turns, newest first: ``next`` leads to earlier turns, as a chat client scrolls back.

    A turn's index moves when a reply is placed before it or leaves the thread (an approval that comes after
    a follow-up, a rejection in the audit), so a cursor that held an index would skip the turn that moved
    into its place. A cursor holds the message a page ended with, and the next page starts from where that
    message is now; one whose message left the thread starts from the place it had.
    """

    ordering = ("-index",)
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def paginate_queryset(self, queryset, request, view=None):
        self._turns = queryset
        return super().paginate_queryset(queryset, request, view)

    def _get_position_from_instance(self, instance, ordering):
        return json.dumps([instance.index, instance.pk], separators=(",", ":"))

    def _values_of(self, position: str) -> list:
        values = json.loads(position)
        if not isinstance(values, list) or len(values) != 2 or any(type(v) is not int for v in values):
            raise ValueError("not a position of this list")
        index, message_id = values
        if not (0 <= index < 2**31 and 0 < message_id < 2**63):  # what the columns hold: a forged number stays out of SQL
            raise ValueError("not a position of this list")
        now = self._turns.filter(pk=message_id).values_list("index", flat=True).first()
        if now is not None:
            return [now]
        # Gone: the turns after it moved down one place, the one right after it into its place. Earlier
        # turns (a forward page) are those before its old place; later ones (backward) start at that place.
        return [index - 1 if self.cursor.reverse else index]

    def latest_page(self, turns, request, turns_url: str) -> tuple[list, str | None]:
        """What a thread's detail shows: its latest turns (``?page_size=`` of them), oldest first, and the link
        to the page of the turns before them in the list at ``turns_url`` (None when the thread starts there)."""
        from atelier_platform.conversations.services import latest_turns

        shown, earlier = latest_turns(turns, self.get_page_size(request))
        if not earlier:
            return shown, None
        self.base_url = turns_url
        if self.page_size_query_param in request.query_params:  # the pages before keep the size asked for
            self.base_url = replace_query_param(turns_url, self.page_size_query_param,
                                                request.query_params[self.page_size_query_param])
        position = self._get_position_from_instance(shown[0], self.ordering)
        return shown, self.encode_cursor(Cursor(offset=0, reverse=False, position=position))
