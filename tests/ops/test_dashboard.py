"""The admin start page: what an operator checks first, in a bounded number of queries."""

from datetime import timedelta

import pytest
from django.utils import timezone

from b24sms.dashboard import dashboard_data
from providers.models import InstallationState, ProviderRegistration, RegistrationState
from tests.ops.factories import make_installation, make_message, make_provider


@pytest.fixture
def admin_client_en(client, staff_user):
    client.force_login(staff_user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def _populate():
    now = timezone.now()
    acme = make_installation("acme.bitrix24.ru")
    beta = make_installation("beta.bitrix24.ru")
    provider = make_provider("acme_sms")
    make_message(installation=acme, provider=provider, state="delivered", sent_at=now, counted=True)
    make_message(installation=acme, provider=provider, state="delivered", sent_at=now, counted=True)
    make_message(installation=acme, provider=provider, state="failed", counted=True)
    make_message(installation=beta, provider=provider, state="received", created_at=now - timedelta(minutes=7))
    make_message(
        installation=beta,
        provider=provider,
        state="undelivered",
        sent_at=now - timedelta(days=3),
        created_at=now - timedelta(days=3),
        counted=True,
    )
    make_installation(
        "broken.bitrix24.ru", state=InstallationState.NEEDS_REINSTALL, last_error="invalid_grant: refresh token expired"
    )
    ProviderRegistration.objects.create(
        provider=provider,
        installation=beta,
        state=RegistrationState.FAILED,
        last_error="ERROR_HANDLER_URL: handler is not reachable",
    )
    return now


@pytest.mark.django_db
def test_dashboard_figures():
    now = _populate()
    data = dashboard_data(now)
    today = {row["portal"]: row for row in data["today"]["rows"]}
    assert today["acme.bitrix24.ru"]["counts"]["delivered"] == 2 and today["acme.bitrix24.ru"]["total"] == 3
    assert today["beta.bitrix24.ru"]["counts"]["received"] == 1 and today["beta.bitrix24.ru"]["total"] == 1
    assert data["today"]["total"] == 4  # the undelivered one was received 3 days ago
    chart = {d["day"]: d["values"] for d in data["chart"]["days"]}
    assert len(chart) == 14
    assert chart[timezone.localdate(now)] == [2, 2, 1]  # sent, delivered, failed
    assert chart[timezone.localdate(now - timedelta(days=3))] == [1, 0, 1]
    assert 400 < data["waiting"]["oldest_message_age"].total_seconds() < 500 and data["waiting"]["messages"] == 1
    assert [i["domain"] for i in data["attention"]["installations"]] == ["broken.bitrix24.ru"]
    assert data["attention"]["registrations"][0]["provider"] == "acme_sms"


@pytest.mark.django_db
def test_admin_start_page_shows_the_dashboard(admin_client_en, django_assert_max_num_queries):
    _populate()
    with django_assert_max_num_queries(20):
        response = admin_client_en.get("/admin/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="b24sms-dashboard"' in html
    assert "Messages today" in html and "acme.bitrix24.ru" in html
    assert "broken.bitrix24.ru" in html and "invalid_grant" in html
    assert "ERROR_HANDLER_URL" in html
    assert "<svg" in html and "<rect" in html
    assert "7 min" in html  # the oldest waiting message


@pytest.mark.django_db
def test_query_count_does_not_grow_with_rows(admin_client_en, django_assert_max_num_queries):
    _populate()
    for _ in range(30):
        make_message(state="delivered", counted=True)
    with django_assert_max_num_queries(20):
        assert admin_client_en.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_empty_dashboard_renders(admin_client_en):
    html = admin_client_en.get("/admin/").content.decode()
    assert "No messages today yet." in html and "All portals and providers are fine." in html


@pytest.mark.django_db
@pytest.mark.parametrize("sandbox", [True, False])
def test_sandbox_banner_on_every_admin_page(client, staff_user, settings, sandbox):
    settings.SANDBOX = sandbox
    login_page = client.get("/admin/login/").content.decode()
    client.force_login(staff_user)
    pages = [client.get(url).content.decode() for url in ("/admin/", "/admin/auth/user/", "/admin/auth/user/add/")]
    for html in [login_page, *pages]:
        assert ('id="b24sms-sandbox-banner"' in html) is sandbox


@pytest.mark.django_db
def test_language_switch(client, staff_user):
    client.force_login(staff_user)
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/admin/"})
    assert response.status_code == 302
    html = client.get("/admin/").content.decode()
    assert '<html lang="en"' in html and "Messages today" in html
    client.post("/i18n/setlang/", {"language": "ru", "next": "/admin/"})
    assert '<html lang="ru"' in client.get("/admin/").content.decode()


@pytest.mark.django_db
def test_russian_by_default_english_by_browser_choice(client, staff_user, settings):
    settings.LANGUAGE_CODE = "ru"  # the project default (DJANGO_LANGUAGE_CODE); tests otherwise run in English
    client.force_login(staff_user)
    html = client.get("/admin/").content.decode()
    assert '<html lang="ru"' in html and "Сообщения сегодня" in html and "ПЕСОЧНИЦА" not in html
    html = client.get("/admin/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert '<html lang="en"' in html and "Messages today" in html


def _message_queries(captured) -> list[str]:
    return [q["sql"] for q in captured if '"providers_message"' in q["sql"]]


@pytest.mark.django_db
def test_start_page_counts_messages_from_the_rollups(admin_client_en):
    """Today's figures and the chart are the rollups' (a message the rollups do not count is not shown); the
    messages table is read only for the waiting messages, restricted by state (the (state, created_at) index)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    now = _populate()
    make_message(state="delivered")  # in the table, not in the rollups: the start page does not count it
    with CaptureQueriesContext(connection) as captured:
        data = dashboard_data(now)
    assert data["today"]["total"] == 4
    totals = dict(zip([s["value"] for s in data["today"]["states"]], data["today"]["totals"], strict=True))
    assert totals["delivered"] == 2 and totals["received"] == 1
    assert data["chart"]["days"][-1]["values"] == [2, 2, 1]
    queries = _message_queries(captured)
    assert len(queries) == 2  # today's waiting messages by portal; the queue's size and oldest
    for sql in queries:
        assert (
            '"providers_message"."state" = \'received\'' in sql
            or "\"providers_message\".\"state\" IN ('received', 'sending')" in sql
        ), sql


@pytest.mark.integration
@pytest.mark.django_db
def test_start_page_never_scans_the_messages_table_on_postgresql(admin_client_en):
    """Every query of the start page that reads messages has an index to use (with sequential scans priced out,
    PostgreSQL still chooses one only when no index applies)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _populate()
    with CaptureQueriesContext(connection) as captured:
        assert admin_client_en.get("/admin/").status_code == 200
    queries = _message_queries(captured)
    assert queries
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        for sql in queries:
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan on providers_message " not in plan, plan
            assert "providers_message_state_idx" in plan, plan
