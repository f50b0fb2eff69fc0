"""Operators see messages with their timeline and what was reported to Bitrix24 (admin and API)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from providers.models import MessageState, MessageStatusChange, StatusReport, StatusReportState
from tests.providers_messages.conftest import make_message


@pytest.fixture
def history(installation, provider):
    message = make_message(installation, provider, 1, state=MessageState.DELIVERED, idgtl_message_uuid="u-1")
    MessageStatusChange.objects.create(message=message, previous_state="", state="received", source="handler")
    MessageStatusChange.objects.create(
        message=message, previous_state="sent", state="delivered", source="callback", idgtl_status="delivered"
    )
    StatusReport.objects.create(
        message=message, status="delivered", state=StatusReportState.ACCEPTED, reported_at=timezone.now(), attempts=1
    )
    other = make_message(installation, provider, 2, state=MessageState.FAILED, error_message="Invalid destination")
    return message, other


def test_api_lists_and_filters_messages(api_client, history):
    message, other = history
    listing = api_client.get("/api/messages/").json()
    assert listing["count"] == 2
    row = next(r for r in listing["results"] if r["id"] == message.pk)
    assert row["state"] == "delivered" and row["portal"] == "acme.bitrix24.test" and row["provider_code"] == "provider1"
    assert [r["id"] for r in api_client.get("/api/messages/?state=failed").json()["results"]] == [other.pk]
    assert [r["id"] for r in api_client.get("/api/messages/?status=delivered").json()["results"]] == [message.pk]
    assert api_client.get(f"/api/messages/?portal={message.installation_id}").json()["count"] == 2
    assert api_client.get(f"/api/messages/?provider={message.provider_id + 100}").json()["count"] == 0
    tomorrow = (timezone.now() + timedelta(days=1)).isoformat()
    assert api_client.get("/api/messages/", {"created_from": tomorrow}).json()["count"] == 0
    assert api_client.get("/api/messages/", {"created_to": tomorrow}).json()["count"] == 2
    assert api_client.get("/api/messages/?state=nonsense").status_code == 400


def test_api_detail_has_the_timeline_and_reports(api_client, history):
    message, _other = history
    detail = api_client.get(f"/api/messages/{message.pk}/").json()
    assert [(c["state"], c["source"]) for c in detail["timeline"]] == [
        ("received", "handler"),
        ("delivered", "callback"),
    ]
    assert [(r["status"], r["state"]) for r in detail["status_reports"]] == [("delivered", "accepted")]
    assert detail["status_reports"][0]["reported_at"]


def test_api_is_staff_only_and_read_only(client, api_client, history):
    message, _other = history
    assert client.get("/api/messages/").status_code in (401, 403)
    assert api_client.delete(f"/api/messages/{message.pk}/").status_code == 405


def test_schema_documents_the_messages_api(api_client):
    schema = api_client.get("/api/schema/?format=json").json()
    assert "/api/messages/" in schema["paths"] and "/api/messages/{id}/" in schema["paths"]
    params = {p["name"] for p in schema["paths"]["/api/messages/"]["get"]["parameters"]}
    assert {"state", "status", "portal", "provider", "created_from", "created_to"} <= params


def test_admin_list_search_and_read_only_detail(client, staff_user, history):
    message, other = history
    client.force_login(staff_user)
    listing = client.get("/admin/providers/message/")
    assert listing.status_code == 200
    assert message.message_id in listing.content.decode()
    found = client.get("/admin/providers/message/", {"q": "+7 999 000-0001"}).content.decode()
    assert message.message_id in found and other.message_id not in found
    assert other.message_id in client.get("/admin/providers/message/", {"q": other.message_id}).content.decode()
    assert client.get("/admin/providers/message/", {"state__exact": "failed"}).status_code == 200
    detail = client.get(f"/admin/providers/message/{message.pk}/change/").content.decode()
    assert "callback" in detail and "accepted" in detail.lower()
    assert 'name="_save"' not in detail


@pytest.fixture
def many_messages(installation, provider):
    """Messages over several portals and providers, each with a timeline and reports."""
    from providers.models import Installation, Provider, ProviderRegistration

    portals = [installation] + [
        Installation.objects.create(
            application=installation.application,
            member_id=f"m{n}",
            domain=f"p{n}.bitrix24.test",
            client_endpoint=f"https://p{n}.bitrix24.test/rest/",
            access_token="a",
            refresh_token="r",
        )
        for n in range(2)
    ]
    providers = [provider] + [Provider.objects.create(code=f"prov{n}", name="P", sender_name="S") for n in range(2)]
    n = 0
    for portal in portals:
        for prov in providers:
            ProviderRegistration.objects.get_or_create(provider=prov, installation=portal)
            for _ in range(4):
                n += 1
                message = make_message(portal, prov, n, state=MessageState.DELIVERED, idgtl_status="delivered")
                for state in ("received", "sending", "sent", "delivered"):
                    MessageStatusChange.objects.create(message=message, state=state, source="send")
                StatusReport.objects.create(message=message, status="sent", state=StatusReportState.ACCEPTED)
                StatusReport.objects.create(message=message, status="delivered", state=StatusReportState.ACCEPTED)
    return n


def test_admin_changelist_queries_do_not_grow_with_messages(
    client, staff_user, many_messages, django_assert_max_num_queries
):
    client.force_login(staff_user)
    with django_assert_max_num_queries(12):
        response = client.get("/admin/providers/message/")
    assert response.status_code == 200
    html = response.content.decode()
    assert all(f"m{n:031d}" in html for n in range(1, many_messages + 1))


def test_admin_detail_queries_do_not_grow_with_the_timeline(
    client, staff_user, many_messages, django_assert_max_num_queries
):
    from providers.models import Message

    client.force_login(staff_user)
    message = Message.objects.first()
    for _ in range(20):
        MessageStatusChange.objects.create(message=message, state="delivered", source="callback")
    with django_assert_max_num_queries(15):
        assert client.get(f"/admin/providers/message/{message.pk}/change/").status_code == 200


def test_api_list_and_detail_queries_are_bounded(api_client, many_messages, django_assert_max_num_queries):
    from providers.models import Message

    with django_assert_max_num_queries(6):
        listing = api_client.get("/api/messages/?page_size=100").json()
    assert listing["count"] == many_messages
    message = Message.objects.first()
    with django_assert_max_num_queries(6):
        detail = api_client.get(f"/api/messages/{message.pk}/").json()
    assert len(detail["timeline"]) == 4 and len(detail["status_reports"]) == 2


@pytest.mark.parametrize(
    "query",
    [
        "message_id=a%00b",
        "destination=%00",
        "idgtl_status=%00",
        "portal_domain=%00",
        "provider_code=%00",
        "created_from=%00",
        "portal=%00",
        "state=%00",
    ],
)
def test_api_filters_with_a_nul_are_400(api_client, history, query):
    response = api_client.get(f"/api/messages/?{query}")
    assert response.status_code == 400


@pytest.mark.parametrize("query", ["q=a%00b", "state__exact=%00", "installation__id__exact=%00", "q=" + "7" * 5000])
def test_admin_changelist_odd_queries_are_not_500(client, staff_user, history, query):
    client.force_login(staff_user)
    response = client.get(f"/admin/providers/message/?{query}")
    assert response.status_code in (200, 302, 400)
    if "%00" in query:
        assert response.status_code == 400
