"""Quotas per portal (issue 9, item 4): a monthly SMS-parts limit and a per-recipient limit per rolling hour.

A message over a quota is not sent to i-dgtl: it ends failed with the reason, Bitrix24 is told
``failed``, the refusal is counted by reason, and the portal shows under "Needs attention"."""

import pytest
from django.utils import timezone

from common import metrics
from providers.models import Message, MessageState, StatusReport
from providers.services.sending import messages_send_waiting
from tests.providers_messages.conftest import make_message


@pytest.fixture
def metric_store(settings):
    settings.REDIS_URL = ""
    metrics.store().clear()
    yield metrics.store()
    metrics.store().clear()


def refusals():
    return dict(metrics.store().read("quota_refusals").items())


def sent_ids(idgtl_api):
    return [int(m["externalMessageId"]) for batch in idgtl_api.sent for m in batch]


def test_monthly_parts_limit_fails_the_message_over_it_and_sends_the_rest(
    installation, provider, idgtl_api, metric_store, django_capture_on_commit_callbacks
):
    installation.quota_monthly_parts = 3
    installation.save()
    one = make_message(installation, provider, 1)  # 1 part
    two = make_message(installation, provider, 2, text="a" * 161)  # 2 parts (GSM-7, 153 each)
    three = make_message(installation, provider, 3)  # 1 more: over the limit
    with django_capture_on_commit_callbacks(execute=True):
        assert messages_send_waiting() == 2
    assert sorted(sent_ids(idgtl_api)) == [one.pk, two.pk]
    three.refresh_from_db()
    assert three.state == MessageState.FAILED
    assert "monthly SMS parts limit" in three.error_message and "3 of 3" in three.error_message
    assert three.status_changes.last().detail == three.error_message
    assert StatusReport.objects.filter(message=three, status="failed").exists()  # Bitrix24 gets failed
    assert refusals() == {'["monthly_parts"]': 1.0}

    # The next month's messages (and a later run) still see what was spent: nothing more goes out.
    four = make_message(installation, provider, 4)
    with django_capture_on_commit_callbacks(execute=True):
        assert messages_send_waiting() == 0
    four.refresh_from_db()
    assert four.state == MessageState.FAILED
    assert len(idgtl_api.sent) == 1


def test_a_failed_message_does_not_spend_the_quota(installation, provider, idgtl_api):
    installation.quota_monthly_parts = 1
    installation.save()
    idgtl_api.send_answers.append({"errors": True, "items": [{"code": 7401, "msg": "Invalid destination"}]})
    make_message(installation, provider, 1)
    messages_send_waiting()
    second = make_message(installation, provider, 2)
    assert messages_send_waiting() == 1
    second.refresh_from_db()
    assert second.state == MessageState.SENT


def test_per_recipient_limit_per_rolling_hour(
    installation, provider, idgtl_api, metric_store, django_capture_on_commit_callbacks
):
    installation.quota_recipient_per_hour = 2
    installation.save()
    same = "+79990001111"
    first = [make_message(installation, provider, n, message_to=same, destination="") for n in (1, 2, 3)]
    other = make_message(installation, provider, 4)
    with django_capture_on_commit_callbacks(execute=True):
        assert messages_send_waiting() == 3
    states = dict(Message.objects.values_list("pk", "state"))
    assert [states[m.pk] for m in first] == [MessageState.SENT, MessageState.SENT, MessageState.FAILED]
    assert states[other.pk] == MessageState.SENT
    refused = Message.objects.get(pk=first[2].pk)
    assert "per-recipient limit" in refused.error_message and "79990001111" in refused.error_message
    assert first[2].pk not in sent_ids(idgtl_api)
    assert refusals() == {'["recipient_per_hour"]': 1.0}

    # An hour later the number may be written to again.
    Message.objects.filter(pk__in=[m.pk for m in first]).update(
        sending_started_at=timezone.now() - timezone.timedelta(minutes=61)
    )
    later = make_message(installation, provider, 5, message_to=same, destination="")
    assert messages_send_waiting() == 1
    later.refresh_from_db()
    assert later.state == MessageState.SENT


def test_no_quota_no_limit(installation, provider, idgtl_api):
    for n in range(1, 4):
        make_message(installation, provider, n, text="a" * 400)
    assert messages_send_waiting() == 3


def test_refusal_is_in_russian_for_a_russian_worker(installation, provider, idgtl_api):
    from django.utils import translation

    installation.quota_monthly_parts = 0
    installation.save()
    message = make_message(installation, provider, 1)
    with translation.override("ru"):
        messages_send_waiting()
    message.refresh_from_db()
    assert message.state == MessageState.FAILED
    assert "лимит" in message.error_message


# --- the start page, the admin, the API ----------------------------------------------------------------
@pytest.fixture
def admin_client_en(client, staff_user):
    client.force_login(staff_user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def test_warning_threshold_shows_the_portal_under_needs_attention(admin_client_en, installation, provider, idgtl_api):
    installation.quota_monthly_parts = 10
    installation.save()
    for n in range(1, 8):
        make_message(installation, provider, n)
    messages_send_waiting()  # 7 of 10 parts: under the 80 % threshold
    html = admin_client_en.get("/admin/").content.decode()
    assert "of 10 SMS parts this month" not in html
    make_message(installation, provider, 8)
    messages_send_waiting()  # 8 of 10: the threshold
    html = admin_client_en.get("/admin/").content.decode()
    assert "Quota: 8 of 10 SMS parts this month (80 %)" in html
    assert "acme.bitrix24.test" in html


def test_a_refusal_shows_the_portal_under_needs_attention(
    admin_client_en, installation, provider, idgtl_api, django_capture_on_commit_callbacks
):
    installation.quota_recipient_per_hour = 0
    installation.save()
    make_message(installation, provider, 1)
    with django_capture_on_commit_callbacks(execute=True):
        messages_send_waiting()
    html = admin_client_en.get("/admin/").content.decode()
    assert "per-recipient limit" in html and "acme.bitrix24.test" in html


def test_admin_form_validates_quotas(admin_client_en, installation):
    url = f"/admin/providers/installation/{installation.pk}/change/"
    data = {
        "account": "",
        "default_region": "RU",
        "rate_limit_burst": 50,
        "rate_limit_drain_per_second": 2,
        "quota_monthly_parts": -1,
        "quota_recipient_per_hour": "",
        "quota_warning_percent": 120,
    }
    response = admin_client_en.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "quota_monthly_parts" in errors and "quota_warning_percent" in errors
    data.update(quota_monthly_parts=1000, quota_warning_percent=90, quota_recipient_per_hour=5)
    assert admin_client_en.post(url, data).status_code == 302
    installation.refresh_from_db()
    assert (
        installation.quota_monthly_parts,
        installation.quota_recipient_per_hour,
        installation.quota_warning_percent,
    ) == (1000, 5, 90)


def test_api_sets_and_validates_quotas(api_client, installation):
    url = f"/api/portals/{installation.pk}/"
    response = api_client.patch(url, {"quota_monthly_parts": -5}, format="json")
    assert response.status_code == 400
    assert "quota_monthly_parts" in response.json()
    response = api_client.patch(url, {"quota_warning_percent": 101}, format="json")
    assert response.status_code == 400 and "quota_warning_percent" in response.json()
    response = api_client.patch(url, {"quota_monthly_parts": 500, "quota_recipient_per_hour": 3}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["quota_monthly_parts"], body["quota_recipient_per_hour"], body["quota_warning_percent"]) == (
        500,
        3,
        80,
    )
    assert api_client.patch(url, {"domain": "evil.example"}, format="json").status_code == 200
    installation.refresh_from_db()
    assert installation.domain == "acme.bitrix24.test"  # only the quotas are writable
    assert api_client.patch(url, {"quota_monthly_parts": None}, format="json").json()["quota_monthly_parts"] is None
