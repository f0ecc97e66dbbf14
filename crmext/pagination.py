"""Admin changelists that stay fast on tables with millions of rows."""
from __future__ import annotations

from django.core.paginator import Paginator
from django.db import connections
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
