"""Fast bulk inserts and counter updates for ingest.

On PostgreSQL rows go in through COPY (ids reserved from the sequence first), which is
several times cheaper than building model instances and INSERT SQL row by row; other
databases use the ORM's bulk_create. Both return the new primary keys in row order.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from functools import cache
from operator import itemgetter
from typing import Any

from django.db import connection, models


def relax_commit_durability() -> None:
    """Lets PostgreSQL acknowledge this transaction's commit before its WAL reaches the disk.

    Safe here because every batch is replayable: a server crash can lose only the last
    few committed batches together with the cursor positions saved in them, so the next
    sync fetches them again (ingest is idempotent). Never corrupts; saves an fsync per batch.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")


@cache
def _bounded_positions(model: type[models.Model], fields: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    meta = model._meta
    return tuple(
        (position, field.max_length)
        for position, name in enumerate(fields)
        if isinstance(field := meta.get_field(name), models.CharField) and field.max_length
    )


def fit_rows(
    model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]
) -> Sequence[Sequence[Any]]:
    """Clips every string bound for a CharField to its max_length: the model's boundary.

    PostgreSQL refuses an over-long value with DataError, which would roll back a whole
    batch (SQLite stores it silently). Columns whose values must stay unique after
    clipping (provider ids, thread keys, refs) are shortened with a hash before this.
    """
    bounded = _bounded_positions(model, tuple(fields))
    # Per column, in C (map/filter/max): nearly every batch fits, and this is on the hot path.
    over = [(position, limit) for position, limit in bounded
            if max(map(len, filter(None, map(itemgetter(position), rows))), default=0) > limit]
    if not over:
        return rows
    fitted: list[Sequence[Any]] = []
    for row in rows:
        row = list(row)
        for position, limit in over:
            if isinstance(row[position], str):
                row[position] = row[position][:limit]
        fitted.append(row)
    return fitted


def bulk_insert(
    model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]], *, returning: bool = True
) -> list[int]:
    """Inserts ``rows`` (values in ``fields`` order); returns their new ids in order, if ``returning``."""
    if not rows:
        return []
    rows = fit_rows(model, fields, rows)
    if connection.vendor == "postgresql":
        return _copy_insert(model, fields, rows, returning)
    created = model._default_manager.bulk_create([model(**dict(zip(fields, row, strict=True))) for row in rows])
    return [obj.pk for obj in created]


def _copy_insert(
    model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]], returning: bool
) -> list[int]:
    from psycopg.types.json import Jsonb

    meta = model._meta
    columns = [meta.get_field(name).column for name in fields]
    json_positions = [i for i, name in enumerate(fields) if isinstance(meta.get_field(name), models.JSONField)]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        ids: list[int] = []
        if returning:
            # COPY returns nothing, so the ids are taken from the sequence first.
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                [meta.db_table, meta.pk.column, len(rows)],
            )
            ids = [row[0] for row in cursor.fetchall()]
            columns = [meta.pk.column, *columns]
            json_positions = [position + 1 for position in json_positions]
            rows = [(new_id, *row) for new_id, row in zip(ids, rows, strict=True)]
        # COPY goes past Django's cursor wrapper: wrap its errors as every other query's are
        # (IntegrityError, DataError, OperationalError...), so callers can tell them apart.
        with connection.wrap_database_errors, cursor.cursor.copy(
            f"COPY {quote(meta.db_table)} ({', '.join(map(quote, columns))}) FROM STDIN"
        ) as copy:
            for row in rows:
                if json_positions:
                    row = list(row)
                    for position in json_positions:
                        row[position] = Jsonb(row[position])
                copy.write_row(row)
    return ids


def insert_ignoring_conflicts(model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Inserts rows, skipping those that collide with a unique constraint (no ids returned)."""
    if not rows:
        return
    rows = fit_rows(model, fields, rows)
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(
            [model(**dict(zip(fields, row, strict=True))) for row in rows], ignore_conflicts=True
        )
        return
    meta = model._meta
    quote = connection.ops.quote_name
    casts = [meta.get_field(name).db_type(connection) for name in fields]
    columns = list(zip(*rows, strict=True))
    # One array parameter per column: the statement stays tiny whatever the row count.
    selects = ", ".join(f"unnest(%s::{cast}[])" for cast in casts)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(meta.get_field(n).column) for n in fields)}) "
            f"SELECT {selects} ON CONFLICT DO NOTHING",
            [list(column) for column in columns],
        )


def add_to_counters(table: str, updates: Sequence[tuple[int, int, dt.datetime | None, dt.datetime | None]]) -> None:
    """Adds to conversations' message counts and widens their first/last dates, in one statement.

    Increments (not recounts) are safe when two workers add to one conversation at once:
    each UPDATE takes the row lock and adds its own share.
    """
    if not updates:
        return
    quote = connection.ops.quote_name(table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            values = ", ".join(["(%s::bigint, %s::integer, %s::timestamptz, %s::timestamptz)"] * len(updates))
            cursor.execute(
                f"UPDATE {quote} AS c SET message_count = c.message_count + v.n, "
                "first_message_at = LEAST(c.first_message_at, v.first), "
                "last_message_at = GREATEST(c.last_message_at, v.last) "
                f"FROM (VALUES {values}) AS v(id, n, first, last) WHERE c.id = v.id",
                [value for update in updates for value in update],
            )
        else:
            adapt = connection.ops.adapt_datetimefield_value
            cursor.executemany(
                f"UPDATE {quote} SET message_count = message_count + %s, "
                "first_message_at = CASE WHEN first_message_at IS NULL OR first_message_at > %s "
                "THEN COALESCE(%s, first_message_at) ELSE first_message_at END, "
                "last_message_at = CASE WHEN last_message_at IS NULL OR last_message_at < %s "
                "THEN COALESCE(%s, last_message_at) ELSE last_message_at END WHERE id = %s",
                [
                    [count, adapt(first), adapt(first), adapt(last), adapt(last), conversation_id]
                    for conversation_id, count, first, last in updates
                ],
            )
