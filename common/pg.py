"""PostgreSQL statements on the hot paths: one kept, server-binding cursor per database connection.

Django's cursor binds parameters on the client (psycopg's ClientCursor): every call quotes each value into
the SQL text, and a statement whose text changes with the number of values is parsed anew each time. For
the few statements that run once per request on the busiest endpoints (the HANDLER's, the callback's),
:func:`kept_cursor` gives a psycopg cursor that sends the parameters apart (prepared after a few runs,
``prepare=True``) and is kept with its connection, so its parameter adapters are built once
(bench/handler_intake.py, bench/cpu_per_sms.py measure them).

It runs on Django's connection, in its transaction state: in autocommit each statement commits itself.
"""

import weakref

import psycopg
from django.db import connection

_CURSORS: "weakref.WeakKeyDictionary[psycopg.Connection, psycopg.Cursor]" = weakref.WeakKeyDictionary()


def kept_cursor() -> psycopg.Cursor:
    """The kept cursor of Django's current PostgreSQL connection (opened if needed). Use it inside
    ``with connection.wrap_database_errors:``, so that database errors are raised as Django's
    (OperationalError, IntegrityError, ...), as through Django's own cursor. (A plain function, not a
    context manager: the HANDLER calls it once per SMS.)"""
    connection.ensure_connection()
    raw_connection = connection.connection
    cursor = _CURSORS.get(raw_connection)
    if cursor is None or cursor.closed:
        cursor = _CURSORS[raw_connection] = psycopg.Cursor(raw_connection)
    return cursor
