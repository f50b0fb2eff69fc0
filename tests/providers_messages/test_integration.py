"""End to end with a real worker, PostgreSQL, Redis, the fake Bitrix24 and the fake i-dgtl (real HTTP).

Bitrix24 posts an SMS to our HANDLER -> the worker sends it to i-dgtl once -> i-dgtl calls back ->
the worker reports the status to the portal with batch.
"""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings

from providers.models import (
    Installation,
    InstallationState,
    Message,
    MessageState,
    ProviderRegistration,
    RegistrationState,
    StatusReport,
    StatusReportState,
    UnmatchedCallbackEvent,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

SENDER_NAME = "MyShop"


CLIENT_ID = "local.messages0000.1"
CLIENT_SECRET = "messages-client-secret"


@pytest.fixture
def portal_setup(live_worker, live_server, bitrix24, idgtl, settings):
    """A portal that installed our app (install endpoint) with provider ``sms1`` registered by the worker."""
    from providers.services.installations import application_sync_default
    from providers.services.registration import provider_create

    settings.B24_CLIENT_ID, settings.B24_CLIENT_SECRET = CLIENT_ID, CLIENT_SECRET
    application_sync_default()
    portal = bitrix24.add_portal(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert bitrix24.install(portal, live_server.url + "/b24/install/", mode="event").status_code == 200
    installation = Installation.objects.get(member_id=portal.member_id)
    provider_create(code="sms1", name="SMS via i-dgtl", sender_name=SENDER_NAME, installations=[installation])
    wait_until(
        lambda: (
            ProviderRegistration.objects.filter(state=RegistrationState.REGISTERED).exists()
            and "sms1" in portal.providers
        ),
        timeout=30,
        message="the provider to be registered on the portal",
    )
    idgtl.allowed_sender_names.add(SENDER_NAME)
    return portal, installation


def idgtl_posts(idgtl):
    return [r for r in idgtl.requests if r.method == "POST" and r.path.endswith("/message")]


def sent_message(message_id) -> Message:
    return wait_until(
        lambda: Message.objects.filter(message_id=message_id, state=MessageState.SENT).first(),
        timeout=30,
        message=f"message {message_id} to be sent",
    )


def portal_statuses(portal, message_id):
    return list(portal.message_statuses.get(message_id, []))


def test_sms_is_sent_once_and_delivery_reaches_the_portal(portal_setup, bitrix24, idgtl):
    portal, installation = portal_setup
    message_id, response = bitrix24.send_sms(portal, "sms1", "+7 (999) 000-12-34", "Your code: 1234")
    assert response.status_code == 200
    message = sent_message(message_id)
    assert [len(r.json) for r in idgtl_posts(idgtl)] == [1]
    sent = idgtl_posts(idgtl)[0].json[0]
    assert sent["destination"] == "79990001234" and sent["senderName"] == SENDER_NAME
    assert sent["externalMessageId"] == str(message.pk)
    assert sent["callbackUrl"].endswith(f"/idgtl/callback/{installation.callback_secret}/")

    idgtl.set_message_status(message.idgtl_message_uuid, "sent")
    idgtl.set_message_status(message.idgtl_message_uuid, "delivered")
    wait_until(
        lambda: portal_statuses(portal, message_id)[-1:] == ["delivered"],
        timeout=30,
        message="the portal to show delivered",
    )
    message.refresh_from_db()
    assert message.state == MessageState.DELIVERED
    assert "queued" not in portal_statuses(portal, message_id)
    assert len(idgtl_posts(idgtl)) == 1
    changes = list(message.status_changes.order_by("id").values_list("source", "state", "idgtl_status"))
    assert [source for source, _state, _status in changes[:3]] == ["handler", "send", "send"]
    assert changes[-1] == ("callback", "delivered", "delivered")
    # i-dgtl's "sent" is on the timeline too (same state), unless its callback came after "delivered"
    assert changes[3:-1] in ([("callback", "sent", "sent")], [])


def test_robot_message_without_auth_is_delivered(portal_setup, bitrix24, idgtl):
    portal, _installation = portal_setup
    message_id, response = bitrix24.send_sms(
        portal, "sms1", "+79990001235", "Robot", module_id="bizproc", with_auth=False
    )
    assert response.status_code == 200
    message = sent_message(message_id)
    assert message.document_id == ["crm", "CCrmDocumentLead", "LEAD_98"]
    idgtl.set_message_status(message.idgtl_message_uuid, "delivered")
    wait_until(
        lambda: portal_statuses(portal, message_id)[-1:] == ["delivered"],
        timeout=30,
        message="the portal to show delivered",
    )


def test_duplicate_handler_posts_send_once(portal_setup, bitrix24, idgtl):
    portal, _installation = portal_setup
    message_id, first = bitrix24.send_sms(portal, "sms1", "+79990001236", "Once", message_id="d" * 32)
    _same, second = bitrix24.send_sms(portal, "sms1", "+79990001236", "Once", message_id="d" * 32)
    assert (first.status_code, second.status_code) == (200, 200)
    sent_message(message_id)
    assert Message.objects.filter(message_id=message_id).count() == 1
    assert sum(len(r.json) for r in idgtl_posts(idgtl)) == 1


def test_forged_calls_are_refused_and_nothing_is_sent(portal_setup, bitrix24, idgtl):
    portal, installation = portal_setup
    _mid, wrong_token = bitrix24.send_sms(portal, "sms1", "+79990001237", "x", application_token="0" * 32)
    forged_url = f"{settings.PUBLIC_BASE_URL}/b24/handler/{'x' * 43}/"
    _mid, wrong_secret = bitrix24.send_sms(portal, "sms1", "+79990001237", "x", handler_url=forged_url)
    _mid, unknown_code = bitrix24.send_sms(
        portal,
        "nope",
        "+79990001237",
        "x",
        handler_url=f"{settings.PUBLIC_BASE_URL}/b24/handler/{installation.handler_secret}/",
    )
    assert (wrong_token.status_code, wrong_secret.status_code, unknown_code.status_code) == (403, 403, 404)
    assert not Message.objects.exists()
    assert idgtl_posts(idgtl) == []


def test_idgtl_5xx_then_recovery_sends_once(portal_setup, bitrix24, idgtl):
    portal, _installation = portal_setup
    idgtl.fail_next(2, 503)  # retried by the client: i-dgtl surely did not take it
    first_id, _r = bitrix24.send_sms(portal, "sms1", "+79990001238", "after 503")
    first = sent_message(first_id)
    idgtl.fail_next(1, 500)  # the outcome is unknown: looked up before any resend
    second_id, _r = bitrix24.send_sms(portal, "sms1", "+79990001239", "after 500")
    second = sent_message(second_id)
    accepted = list(idgtl.messages.values())
    assert sorted(m["externalMessageId"] for m in accepted) == sorted([str(first.pk), str(second.pk)])
    assert second.send_attempts == 2  # sent again only after the lookup found nothing


def test_undeliverable_and_invalid_numbers_are_reported(portal_setup, bitrix24, idgtl):
    portal, _installation = portal_setup
    undeliverable_id, _r = bitrix24.send_sms(portal, "sms1", "+79990000000", "never arrives")
    message = sent_message(undeliverable_id)
    idgtl.set_message_status(message.idgtl_message_uuid, "undelivered", error_code=6969)
    wait_until(
        lambda: portal_statuses(portal, undeliverable_id)[-1:] == ["undelivered"],
        timeout=30,
        message="the portal to show undelivered",
    )
    message.refresh_from_db()
    assert (message.state, message.error_code) == (MessageState.UNDELIVERED, 6969)

    posts_before = len(idgtl_posts(idgtl))
    invalid_id, response = bitrix24.send_sms(portal, "sms1", "12", "bad number")
    assert response.status_code == 200
    wait_until(
        lambda: portal_statuses(portal, invalid_id)[-1:] == ["failed"], timeout=30, message="the portal to show failed"
    )
    assert len(idgtl_posts(idgtl)) == posts_before


def test_uninstalled_portal_is_not_called(portal_setup, bitrix24, idgtl):
    portal, installation = portal_setup
    message_id, _r = bitrix24.send_sms(portal, "sms1", "+79990001240", "before uninstall")
    message = sent_message(message_id)  # nothing is reported for "sent": Bitrix24 shows it already
    assert bitrix24.uninstall(portal).status_code == 200
    calls_before = len(portal.calls)
    idgtl.set_message_status(message.idgtl_message_uuid, "delivered")
    report = wait_until(
        lambda: StatusReport.objects.filter(
            message=message, status="delivered", state=StatusReportState.REJECTED
        ).first(),
        timeout=30,
        message="the delivered report to be closed",
    )
    assert "uninstalled" in report.last_error
    assert len(portal.calls) == calls_before
    handler_url = f"{settings.PUBLIC_BASE_URL}/b24/handler/{installation.handler_secret}/"
    _mid, refused = bitrix24.send_sms(portal, "sms1", "+79990001241", "after uninstall", handler_url=handler_url)
    assert refused.status_code == 403
    assert installation.__class__.objects.get(pk=installation.pk).state == InstallationState.REMOVED


def test_expired_token_mid_flow_is_refreshed(portal_setup, bitrix24, idgtl):
    portal, _installation = portal_setup
    message_id, _r = bitrix24.send_sms(portal, "sms1", "+79990001242", "token expires")
    message = sent_message(message_id)
    bitrix24.expire_access_tokens(portal)
    idgtl.set_message_status(message.idgtl_message_uuid, "delivered")
    wait_until(
        lambda: portal_statuses(portal, message_id)[-1:] == ["delivered"],
        timeout=30,
        message="delivered reported after a token refresh",
    )


def test_burst_meeting_query_limit_exceeded_loses_nothing(portal_setup, bitrix24, idgtl):
    portal, _installation = portal_setup
    bitrix24.fail_next(3, "QUERY_LIMIT_EXCEEDED", 503)
    with ThreadPoolExecutor(max_workers=8) as pool:  # Bitrix24's queue posts a burst in parallel
        posted = list(
            pool.map(lambda n: bitrix24.send_sms(portal, "sms1", f"+7999000{n:04d}", f"burst {n}"), range(1300, 1360))
        )
    assert {response.status_code for _mid, response in posted} == {200}
    ids = [mid for mid, _response in posted]
    wait_until(
        lambda: Message.objects.filter(message_id__in=ids, state=MessageState.SENT).count() == len(ids),
        timeout=90,
        message="the burst to be sent",
    )
    assert sum(len(r.json) for r in idgtl_posts(idgtl)) == len(ids)
    assert len(idgtl_posts(idgtl)) <= len(ids) / 3  # batched, not one call per message
    for message in Message.objects.filter(message_id__in=ids):
        idgtl.set_message_status(message.idgtl_message_uuid, "delivered")
    wait_until(
        lambda: all(portal_statuses(portal, mid)[-1:] == ["delivered"] for mid in ids),
        timeout=150,
        message="every delivery to reach the portal",
    )
    assert [r.status for r in bitrix24.requests if r.method == "batch"].count(503) == 3  # it did meet the limit


def test_callbacks_that_come_before_the_send_answer_lose_nothing(portal_setup, bitrix24, idgtl):
    """i-dgtl delivers every message and posts its callbacks (sent, then delivered or undelivered)
    before it answers POST /message: each event is kept (answered 200 once stored) and applied when
    the answer's uuids are recorded. Every message ends final at the portal, each sent once."""
    portal, _installation = portal_setup
    idgtl.callbacks_before_answer = True
    numbers = [f"+7999100{n:04d}" for n in range(1, 40)] + ["+79991000000"]  # ...0000: undeliverable
    with ThreadPoolExecutor(max_workers=8) as pool:  # Bitrix24's queue posts a burst in parallel
        posted = list(pool.map(lambda number: bitrix24.send_sms(portal, "sms1", number, "early callbacks"), numbers))
    assert {response.status_code for _mid, response in posted} == {200}
    expected = {
        mid: "undelivered" if number.endswith("0000") else "delivered"
        for (mid, _response), number in zip(posted, numbers, strict=False)
    }
    wait_until(
        lambda: all(portal_statuses(portal, mid)[-1:] == [status] for mid, status in expected.items()),
        timeout=90,
        message="every final status to reach the portal",
    )

    assert dict(Message.objects.filter(message_id__in=expected).values_list("message_id", "state")) == expected
    assert sum(len(r.json) for r in idgtl_posts(idgtl)) == len(expected)  # each sent once
    assert not UnmatchedCallbackEvent.objects.exists()
    # Every callback came before the uuids were recorded, was stored, and answered 200 at once.
    assert len(idgtl.callbacks) == 2 * len(expected)
    assert all(c["attempts"] == [200] and json.loads(c["answer"])["stored"] == 1 for c in idgtl.callbacks)
    for message in Message.objects.filter(message_id__in=expected):
        changes = list(message.status_changes.order_by("id").values_list("source", "state"))
        assert changes[-3:] == [("send", "sent"), ("callback", "sent"), ("callback", expected[message.message_id])]
