"""Writing a different value per row in one statement.

Django's ``bulk_update`` writes ``CASE WHEN id = 1 THEN ... WHEN id = 2 THEN ...`` for each field:
on PostgreSQL a batch of 1,000 messages costs about half a second that way. ``UPDATE ... FROM
(VALUES ...)`` does the same work as a join, in a few milliseconds (bench/sending_burst.py).
"""

from django.db import connection


def bulk_update_rows(model, objs, fields, *, batch_size: int = 1000) -> None:
    """Write ``fields`` (names of concrete, non-key fields) of each of ``objs`` (saved instances)."""
    objs = list(objs)
    if not objs or not fields:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_update(objs, list(fields), batch_size=batch_size)
        return
    meta = model._meta
    quote = connection.ops.quote_name
    pk = meta.pk
    columns = [meta.get_field(name) for name in fields]
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in columns)
    casts = [pk.cast_db_type(connection)] + [f.cast_db_type(connection) for f in columns]
    row = "(" + ", ".join(f"%s::{cast}" for cast in casts) + ")"
    names = ", ".join(quote(c) for c in [pk.column] + [f.column for f in columns])
    with connection.cursor() as cursor:
        for start in range(0, len(objs), batch_size):
            batch = objs[start : start + batch_size]
            params = []
            for obj in batch:
                params.append(obj.pk)
                params.extend(f.get_db_prep_save(getattr(obj, f.attname), connection) for f in columns)
            cursor.execute(
                f"UPDATE {quote(meta.db_table)} AS t SET {assignments} "
                f"FROM (VALUES {', '.join([row] * len(batch))}) AS v({names}) "
                f"WHERE t.{quote(pk.column)} = v.{quote(pk.column)}",
                params,
            )
