from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination


class SafeCursorPagination(CursorPagination):
    """A cursor is the client's to send back unchanged; a forged one (a position that is not a date,
    a number or an id) is an invalid cursor (404), not a database error."""

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except (DjangoValidationError, ValueError, TypeError, OverflowError):
            raise NotFound(self.invalid_cursor_message) from None


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
