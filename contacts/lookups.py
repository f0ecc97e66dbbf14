"""``field__any=[...]``: membership in a list, as one array parameter on PostgreSQL.

``field__in=[...]`` sends one placeholder per value, and with hundreds of values the
client-side query building and the server's parsing cost more than the index lookups
themselves. ``= ANY(%s)`` sends one array. Other databases get a plain IN.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from django.db import connection
from django.db.models import CharField, Lookup
from django.db.models.lookups import In

T = TypeVar("T")


@CharField.register_lookup
class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False
    can_use_none_as_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        # Not PostgreSQL: fall back to IN with one placeholder per value.
        return In(self.lhs, list(self.rhs)).as_sql(compiler, connection)

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} = ANY(%s)", [*lhs_params, [str(value) for value in self.rhs]]


def chunked(values: Sequence[T]) -> list[Sequence[T]]:
    """Splits values for ``__any``/``__in`` queries: SQLite caps the number of parameters
    (999 in older builds); PostgreSQL takes the whole list as one array."""
    size = 50_000 if connection.vendor == "postgresql" else 900
    return [values[start : start + size] for start in range(0, len(values), size)]
