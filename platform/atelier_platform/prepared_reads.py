"""Reads on every job's path whose SQL Django builds once per database connection, not on every call.

Turning a queryset into SQL is most of the cost of a small read through the ORM: for the worker's read
of a claimed job with its project and safety policy, 0.43 of 0.52 ms on SQLite (the database's own
work is 0.05 ms). A job crosses a handful of such reads whose shape never changes, only their values:
the API key, the project's plugin settings, the claimed job, the project's model pin, the job read
again after a wait.

``PreparedRead`` builds its queryset once per connection with marker values, finds where the markers
landed among the statement's parameters, and checks that a second build with other markers differs
there and nowhere else. From then on it runs that SQL with the caller's values (prepared for the
database by the same model fields the ORM would use) and turns the rows into model instances as
Django's own ``ModelIterable`` does: the same converters, the same ``select_related`` population.
A queryset it cannot treat so (values(), prefetches, annotations, a value of a field type it has no
marker for, a marker it cannot find) is run through the ORM on every call instead, with the same results;
so is a call with a value the ORM does not simply pass on as a parameter (``None`` becomes ``IS NULL``, a
float compared with an integer column is rounded by the lookup, a model instance stands for its key).
"""

from __future__ import annotations

import logging
import random
import uuid
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models.query import ModelIterable, get_related_populators

logger = logging.getLogger("atelier.db")


#: Values a prepared statement takes: the ORM passes them on as the parameter (through the same field's
#: ``get_db_prep_value``), whatever the lookup. Any other (None, a float, a model instance) goes through the ORM.
_PARAMETER_TYPES = (str, int, uuid.UUID)


@dataclass(frozen=True)
class _Statement:
    sql: str
    params: tuple
    positions: tuple[tuple[str, int], ...]  # (value name, index in params)
    compiler: Any  # Django's SQLCompiler, kept for its converters and select layout
    converters: dict
    model: type[models.Model]
    init_list: list[str]
    model_fields: slice
    related_populators: list


class PreparedRead:
    """``build(**values)`` is the queryset; ``fields`` names the model field behind each value, whose
    ``get_db_prep_value`` turns a caller's value into the statement's parameter."""

    def __init__(self, build: Callable[..., models.QuerySet], **fields: models.Field) -> None:
        self._build = build
        self._fields = fields
        # one statement per connection object (Django keeps one per thread): the converters it holds
        # are bound to that connection; None when the queryset cannot be prepared
        self._statements: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __call__(self, **values: Any) -> list[models.Model]:
        connection = connections[DEFAULT_DB_ALIAS]
        try:
            statement = self._statements[connection]
        except KeyError:
            statement = self._statements[connection] = self._prepare(connection)
        if statement is None or not all(isinstance(value, _PARAMETER_TYPES) for value in values.values()):
            return list(self._build(**values))
        params = list(statement.params)
        for name, index in statement.positions:
            params[index] = self._fields[name].get_db_prep_value(values[name], connection, prepared=False)
        with connection.cursor() as cursor:
            cursor.execute(statement.sql, params)
            rows = cursor.fetchall()
        if statement.converters:
            rows = statement.compiler.apply_converters(rows, statement.converters)
        instances = []
        for row in rows:
            instance = statement.model.from_db(DEFAULT_DB_ALIAS, statement.init_list, row[statement.model_fields])
            for populator in statement.related_populators:
                populator.populate(row, instance)
            instances.append(instance)
        return instances

    def first(self, **values: Any) -> models.Model | None:
        found = self(**values)
        return found[0] if found else None

    # -- building the statement once -------------------------------------------------------------------
    def _prepare(self, connection) -> _Statement | None:
        try:
            first, second = self._markers(connection), self._markers(connection)
        except TypeError as error:
            logger.info("%s: %s; it runs through the ORM every time", self._build, error)
            return None
        queryset = self._build(**first)
        if (queryset._iterable_class is not ModelIterable or queryset._prefetch_related_lookups
                or queryset._known_related_objects or queryset.query.annotations or queryset.query.extra):
            logger.info("%s: not a plain read of model rows; it runs through the ORM every time", self._build)
            return None
        compiler = queryset.query.get_compiler(connection=connection)
        try:
            sql, params = compiler.as_sql()
            other_sql, other_params = self._build(**second).query.get_compiler(connection=connection).as_sql()
        except (EmptyResultSet, FullResultSet):  # the query's SQL depends on the values themselves
            logger.info("%s: its SQL depends on its values; it runs through the ORM every time", self._build)
            return None
        positions = self._positions(connection, params, other_params, first, second) if sql == other_sql else None
        if positions is None:
            logger.warning("%s: its parameters could not be told apart; it runs through the ORM every time", self._build)
            return None
        select, klass_info = compiler.select, compiler.klass_info
        fields = klass_info["select_fields"]
        return _Statement(
            sql=sql, params=tuple(params), positions=positions, compiler=compiler,
            converters=compiler.get_converters([column[0] for column in select[0:compiler.col_count]]),
            model=klass_info["model"], init_list=[column[0].target.attname for column in select[fields[0]:fields[-1] + 1]],
            model_fields=slice(fields[0], fields[-1] + 1),
            related_populators=get_related_populators(klass_info, select, DEFAULT_DB_ALIAS),
        )

    def _positions(self, connection, params, other_params, first, second) -> tuple[tuple[str, int], ...] | None:
        """Where each value goes: the indices holding its first marker (as the database gets it), which
        must hold its second marker in the second build; every other parameter must be the same."""
        if len(params) != len(other_params):
            return None
        positions = []
        for name, field in self._fields.items():
            marker = field.get_db_prep_value(first[name], connection, prepared=False)
            other = field.get_db_prep_value(second[name], connection, prepared=False)
            found = [index for index, param in enumerate(params) if param == marker]
            if not found or any(other_params[index] != other for index in found):
                return None
            positions += [(name, index) for index in found]
        varying = {index for _, index in positions}
        if any(params[index] != other_params[index] for index in range(len(params)) if index not in varying):
            return None
        return tuple(positions)

    def _markers(self, connection) -> dict[str, Any]:
        """A value for each field that no real parameter of the query will equal; TypeError for a field
        type without one. A text marker holds the characters a lookup may escape (``iexact`` on SQLite is a
        ``LIKE`` with ``%``, ``_`` and ``\\`` escaped), so that such a lookup is not found where the caller's
        value would go unescaped, and runs through the ORM."""
        markers = {}
        for name, field in self._fields.items():
            target = getattr(field, "target_field", field)  # a foreign key's value is its target's
            if isinstance(target, models.UUIDField):
                markers[name] = uuid.uuid4()
            elif isinstance(target, (models.IntegerField, models.AutoField)):
                # Within the column's range: out of it, the ORM compiles a comparison to "no rows" on
                # PostgreSQL (a smallint column compared with 10**8), not to SQL with the marker.
                low, high = connection.ops.integer_field_range(target.get_internal_type())
                high = 2**31 - 1 if high is None else high
                markers[name] = random.randint(max(high // 2, 0 if low is None else low), high)
            elif isinstance(target, (models.CharField, models.TextField)):
                markers[name] = f"prepared_read%marker\\{uuid.uuid4().hex}"
            else:
                raise TypeError(f"no marker for {type(target).__name__} {name!r}")
        return markers
