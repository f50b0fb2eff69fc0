"""The messages changelist costs the same with ten million messages as with a few (issue 9, item 7; measured
by bench/scale.py): no COUNT(*) over the table, filters listed from the code, no date hierarchy, and a search
that is an exact match on indexed columns."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from providers.admin.paginator import EstimatedCountPaginator, round_estimate
from providers.models import Message, MessageState
from tests.providers_messages.conftest import make_message

CHANGELIST = "/admin/providers/message/"


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def message_queries(captured) -> list[str]:
    """The queries that read messages (an EXPLAIN reads none)."""
    return [
        q["sql"]
        for q in captured
        if re.search(r'FROM "providers_message"', q["sql"]) and not q["sql"].startswith("EXPLAIN")
    ]


def test_filters_are_listed_without_reading_the_messages(admin_client, installation, provider):
    make_message(installation, provider, 1, state=MessageState.DELIVERED, idgtl_status="delivered")
    with CaptureQueriesContext(connection) as captured:
        page = admin_client.get(CHANGELIST).content.decode()
    assert "CRM card" in page and "workflow or robot" in page  # origin, from its labels
    assert "Undelivered" in page  # an i-dgtl status no message has yet is offered all the same
    queries = message_queries(captured)
    assert len(queries) == 2 and "COUNT(" in queries[0]  # the count and the page, nothing else
    assert not any("DISTINCT" in sql or "MIN(" in sql for sql in queries)
    assert 'class="xfull"' not in page  # no date hierarchy (its links are a DISTINCT over every row)


def test_an_unknown_value_in_the_url_still_filters(admin_client, installation, provider):
    make_message(installation, provider, 1, module_id="landing")
    make_message(installation, provider, 2)
    page = admin_client.get(CHANGELIST, {"module_id": "landing"}).content.decode()
    assert f"m{1:031d}" in page and f"m{2:031d}" not in page


@pytest.mark.parametrize("typed", ["+7 999 000-0001", "8 (999) 000-00-01", "79990000001", "+79990000001"])
def test_search_finds_a_number_written_in_any_way(admin_client, installation, provider, typed):
    make_message(installation, provider, 1)
    make_message(installation, provider, 2)
    page = admin_client.get(CHANGELIST, {"q": typed}).content.decode()
    assert f"m{1:031d}" in page and f"m{2:031d}" not in page


def test_search_is_an_exact_match_on_indexed_columns(admin_client, installation, provider):
    make_message(installation, provider, 1, idgtl_message_uuid="6f1c2a9e-0000-4000-8000-000000000001")
    make_message(installation, provider, 2)
    assert f"m{1:031d}" in admin_client.get(CHANGELIST, {"q": "6f1c2a9e-0000-4000-8000-000000000001"}).content.decode()
    assert f"m{2:031d}" in admin_client.get(CHANGELIST, {"q": f"m{2:031d}"}).content.decode()
    with CaptureQueriesContext(connection) as captured:
        page = admin_client.get(CHANGELIST, {"q": "0001"}).content.decode()  # a part of a number is not a number
    assert f"m{1:031d}" not in page
    assert "A whole phone number" in page  # what the box searches, said under it
    assert not any("LIKE" in sql for sql in message_queries(captured))


def test_round_estimate_keeps_two_significant_digits():
    assert [round_estimate(n) for n in (7, 99, 123, 10_000_394, 987_654)] == [7, 99, 120, 10_000_000, 990_000]


def test_the_paginator_counts_exactly_off_postgresql(installation, provider):
    for n in range(3):
        make_message(installation, provider, n)
    paginator = EstimatedCountPaginator(Message.objects.order_by("-created_at", "-pk"), 2)
    assert paginator.count == 3 and not paginator.count_is_estimate


# --- PostgreSQL: the estimate, and the plans -------------------------------------------------------------------
@pytest.mark.integration
def test_a_large_result_is_shown_as_an_estimate_without_a_count_over_the_table(
    admin_client, installation, provider, monkeypatch
):
    for n in range(1, 13):
        make_message(installation, provider, n)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE providers_message")
    monkeypatch.setattr(EstimatedCountPaginator, "exact_up_to", 5)
    with CaptureQueriesContext(connection) as captured:
        page = admin_client.get(CHANGELIST).content.decode()
    assert re.search(r"about 1\d rows", page), page[-3000:]
    assert not [sql for sql in message_queries(captured) if "COUNT(" in sql.upper()]  # nothing counted
    assert f"m{12:031d}" in page

    monkeypatch.setattr(EstimatedCountPaginator, "exact_up_to", 100)
    page = admin_client.get(CHANGELIST).content.decode()
    assert "12 rows" in page and "about" not in page.split('class="paginator"')[1]


@pytest.mark.integration
def test_the_changelist_takes_the_same_queries_with_more_messages(admin_client, installation, provider, monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_up_to", 20)
    make_message(installation, provider, 1)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(CHANGELIST, {"installation__id__exact": installation.pk, "state__exact": "received"})
    for n in range(2, 60):
        make_message(installation, provider, n)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE providers_message")
    with CaptureQueriesContext(connection) as many:
        page = admin_client.get(CHANGELIST, {"installation__id__exact": installation.pk, "state__exact": "received"})
    assert len(many) <= len(few)  # one fewer: the estimate replaces the count
    assert "about" in page.content.decode()


@pytest.mark.integration
@pytest.mark.parametrize(
    "term, index",
    [
        ("+7 999 000-0001", "providers_msg_destination_idx"),
        (f"m{1:031d}", "providers_message_once_per_portal"),
        ("6f1c2a9e-0000-4000-8000-000000000001", "providers_message_uuid_idx"),
    ],
)
def test_each_search_is_answered_from_an_index(admin_client, installation, provider, term, index):
    make_message(installation, provider, 1, idgtl_message_uuid="6f1c2a9e-0000-4000-8000-000000000001")
    with CaptureQueriesContext(connection) as captured:
        page = admin_client.get(CHANGELIST, {"q": term}).content.decode()
    assert f"m{1:031d}" in page
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # priced out: chosen only when no index applies
        for sql in message_queries(captured):
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan on providers_message " not in plan and index in plan, plan
