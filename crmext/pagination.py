"""Admin changelists that stay fast on tables with millions of rows."""
from __future__ import annotations

import datetime as dt

from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Max, Min, QuerySet
from django.utils import timezone
from django.utils.functional import cached_property

# Below this many rows an exact COUNT(*) is cheap and better than an estimate.
EXACT_COUNT_LIMIT = 100_000


class EstimatedCountPaginator(Paginator):
    """Uses PostgreSQL's planner estimate for an unfiltered changelist's total.

    COUNT(*) over millions of rows is a sequential scan on PostgreSQL; the estimate in
    pg_class is free and close enough for page numbers. Filtered lists count exactly
    (their filters are indexed).
    """

    @cached_property
    def count(self) -> int:
        queryset = getattr(self.object_list, "query", None)
        if queryset is not None and not queryset.where:
            connection = connections[self.object_list.db]
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                        [self.object_list.model._meta.db_table],
                    )
                    row = cursor.fetchone()
                if row and row[0] and row[0] > EXACT_COUNT_LIMIT:
                    return int(row[0])
        return super().count


class IndexedDateListQuerySet(QuerySet):
    """A queryset whose year and month lists for the admin's date hierarchy come from MIN/MAX.

    Django lists the years (or months) present with SELECT DISTINCT DATE_TRUNC(...), which
    reads every row; MIN and MAX of an indexed column are two index probes. The price: a
    year or month with no rows between the first and the last is listed (and shows none).
    Days are listed exactly: by then the filter has narrowed the rows to one month.
    """

    def dates(self, field_name: str, kind: str, order: str = "ASC"):  # type: ignore[no-untyped-def]
        if kind not in ("year", "month"):
            return super().dates(field_name, kind, order)
        return self._span(field_name, kind, order, as_datetimes=False)

    def datetimes(self, field_name: str, kind: str, order: str = "ASC", tzinfo=None):  # type: ignore[no-untyped-def]
        if kind not in ("year", "month"):
            return super().datetimes(field_name, kind, order, tzinfo)
        return self._span(field_name, kind, order, as_datetimes=True)

    def _span(self, field_name: str, kind: str, order: str, as_datetimes: bool) -> list[dt.date | dt.datetime]:
        bounds = self.aggregate(first=Min(field_name), last=Max(field_name))
        first, last = bounds["first"], bounds["last"]
        if first is None or last is None:
            return []
        if isinstance(first, dt.datetime):
            zone = timezone.get_current_timezone()
            first, last = first.astimezone(zone), last.astimezone(zone)
        steps: list[dt.date | dt.datetime] = []
        year, month = first.year, first.month if kind == "month" else 1
        while (year, month) <= (last.year, last.month if kind == "month" else 1):
            day = dt.date(year, month, 1)
            steps.append(
                dt.datetime(year, month, 1, tzinfo=timezone.get_current_timezone()) if as_datetimes else day
            )
            if kind == "year":
                year += 1
            else:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return steps if order == "ASC" else steps[::-1]


class LargeTableChangeList(ChangeList):
    def get_queryset(self, request, exclude_parameters=None):  # type: ignore[no-untyped-def]
        queryset = super().get_queryset(request, exclude_parameters)
        # Only this changelist's queryset lists dates from MIN/MAX; the model's stays exact.
        queryset.__class__ = type("IndexedDates" + type(queryset).__name__,
                                  (IndexedDateListQuerySet, type(queryset)), {})
        return queryset
