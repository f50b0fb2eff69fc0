"""i-dgtl balance (issue 9, item 5): beat reads GET /balance, keeps it on the account, shows it (admin list,
start page, /metrics), and e-mails the admins once per crossing of the low-balance threshold."""

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from common import metrics
from idgtl import balance
from idgtl.balance import Outcome, account_balance_poll, account_balance_record, accounts_due, balances_poll
from idgtl.client import IdgtlClient
from idgtl.models import IdgtlAccount
from idgtl.services import account_get_default
from idgtl.tasks import poll_balances
from tests.concurrency import run_together
from tests.ops.test_metrics import scrape, value


@pytest.fixture
def admins(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.EMAIL_SUBJECT_PREFIX = "[b24sms] "
    settings.LANGUAGE_CODE = "en"
    mail.outbox = []
    return settings


@pytest.fixture
def account(idgtl, admins):
    """The default account, pointed at the fake i-dgtl, with a threshold of 1000 RUB."""
    account = account_get_default()
    IdgtlAccount.objects.filter(pk=account.pk).update(low_balance_threshold=Decimal("1000"))
    account.refresh_from_db()
    return account


def poll(account, fake, amount):
    fake.balance = amount
    return account_balance_poll(account=account)


def state(account):
    account.refresh_from_db()
    return account


def test_a_poll_stores_the_balance_and_its_time(account, idgtl):
    before = timezone.now()
    assert poll(account, idgtl, 1234.5) == Outcome.READ
    account = state(account)
    assert account.balance == Decimal("1234.50") and account.balance_currency == "RUB"
    assert before <= account.balance_at <= timezone.now() and account.balance_checked_at == account.balance_at
    assert account.balance_error == "" and account.low_balance_alert_sent_at is None and not mail.outbox
    assert [r.path for r in idgtl.requests][-1].endswith("/balance")


def test_one_mail_per_crossing_and_rearmed_above(account, idgtl, caplog):
    caplog.set_level(logging.INFO, logger="idgtl.balance")
    assert poll(account, idgtl, 1500) == Outcome.READ
    assert poll(account, idgtl, 900) == Outcome.ALERTED
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@example.com"]
    assert message.subject == "[b24sms] Low i-dgtl balance: default has 900.00 RUB"
    assert "below its threshold of 1000.00 RUB" in message.body
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "below its threshold" in errors[0].getMessage()
    alert_sent_at = state(account).low_balance_alert_sent_at
    assert alert_sent_at is not None

    for amount in (800, 10, 999.99):  # still below: every poll reads, none mails again
        assert poll(account, idgtl, amount) == Outcome.READ
    assert len(mail.outbox) == 1 and state(account).low_balance_alert_sent_at == alert_sent_at

    assert poll(account, idgtl, 1000) == Outcome.REARMED  # at the threshold again: re-armed, no mail
    assert state(account).low_balance_alert_sent_at is None and len(mail.outbox) == 1
    assert poll(account, idgtl, 1200) == Outcome.READ

    assert poll(account, idgtl, 700) == Outcome.ALERTED  # the next crossing: the next mail
    assert len(mail.outbox) == 2 and "700.00 RUB" in mail.outbox[1].subject
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2


def test_below_the_threshold_at_the_first_read_alerts_once(account, idgtl):
    assert poll(account, idgtl, 5) == Outcome.ALERTED
    assert poll(account, idgtl, 5) == Outcome.READ
    assert len(mail.outbox) == 1


def test_no_threshold_no_alert_and_clearing_it_rearms(account, idgtl):
    assert poll(account, idgtl, 5) == Outcome.ALERTED
    IdgtlAccount.objects.filter(pk=account.pk).update(low_balance_threshold=None)
    assert poll(account, idgtl, 5) == Outcome.REARMED
    assert poll(account, idgtl, 1) == Outcome.READ
    assert len(mail.outbox) == 1


def test_two_polls_storing_the_same_crossing_send_one_mail(account):
    """The conditional UPDATE itself: two polls that both stored a balance below the threshold (the same read
    time, as two processes can) both try to mark the alert sent; one succeeds and mails."""
    read_at = timezone.now()
    outcomes = [
        account_balance_record(account=account, amount=Decimal("10"), currency="RUB", read_at=read_at) for _ in range(2)
    ]
    assert sorted(outcomes) == [Outcome.ALERTED, Outcome.READ]
    assert len(mail.outbox) == 1


def test_a_poll_finishing_inside_another_sends_one_mail(account, idgtl, monkeypatch):
    """Poll A asks i-dgtl; meanwhile poll B reads, stores and alerts; then A's answer comes: nothing more."""
    real_get_balance = IdgtlClient.get_balance
    inner = []
    calls = []

    def get_balance(client):
        calls.append(1)
        answer = real_get_balance(client)
        if len(calls) == 1:  # A's call: B runs whole before A's answer is handled
            inner.append(account_balance_poll(account=IdgtlAccount.objects.get(pk=account.pk)))
        return answer

    monkeypatch.setattr(IdgtlClient, "get_balance", get_balance)
    idgtl.balance = 10
    outer = account_balance_poll(account=account)
    assert inner == [Outcome.ALERTED] and outer == Outcome.READ  # A's answer came last: stored, alert already sent
    assert len(mail.outbox) == 1


def test_a_read_older_than_the_stored_one_changes_nothing(account):
    now = timezone.now()
    assert account_balance_record(account=account, amount=Decimal("2000"), currency="RUB", read_at=now) == Outcome.READ
    older = now - timedelta(seconds=1)
    assert account_balance_record(account=account, amount=Decimal("10"), currency="RUB", read_at=older) == Outcome.STALE
    assert state(account).balance == Decimal("2000.00") and state(account).balance_at == now and not mail.outbox


@pytest.mark.integration
def test_concurrent_polls_in_threads_send_one_mail(transactional_db, idgtl, admins):
    account = account_get_default()
    IdgtlAccount.objects.filter(pk=account.pk).update(low_balance_threshold=Decimal("1000"))
    idgtl.balance = 10
    outcomes = run_together(lambda: account_balance_poll(account=IdgtlAccount.objects.get(pk=account.pk)), 4)
    assert outcomes.count(Outcome.ALERTED) == 1, outcomes
    assert len(mail.outbox) == 1
    assert IdgtlAccount.objects.get(pk=account.pk).low_balance_alert_sent_at is not None


def test_a_read_error_is_recorded_and_the_last_value_kept(account, idgtl, caplog):
    assert poll(account, idgtl, 900) == Outcome.ALERTED
    read = state(account)
    idgtl.fail_next(5, 503)
    assert account_balance_poll(account=account) == Outcome.ERROR
    account = state(account)
    assert "503" in account.balance_error
    assert account.balance == Decimal("900.00") and account.balance_at == read.balance_at  # the last good read
    assert account.balance_checked_at > read.balance_at
    assert account.low_balance_alert_sent_at == read.low_balance_alert_sent_at  # the alert state is left alone
    assert any("not read" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)

    idgtl.reset()
    idgtl.balance = 1500
    assert account_balance_poll(account=account) == Outcome.REARMED
    assert state(account).balance_error == ""  # cleared once a read works


@pytest.mark.parametrize(
    "answer, error",
    [
        ({}, "unexpected balance"),
        ({"USD": 1, "EUR": 2}, "several currencies"),
        ({"RUB": "lots"}, "not a number"),
        ({"RUB": True}, "not a number"),
        ({"RUB": "NaN"}, "out of range"),
        ([1, 2], "unexpected balance"),
    ],
)
def test_an_unexpected_answer_is_a_read_error(account, monkeypatch, answer, error):
    monkeypatch.setattr(IdgtlClient, "get_balance", lambda client: answer)
    assert account_balance_poll(account=account) == Outcome.ERROR
    assert error in state(account).balance_error and state(account).balance is None


def test_the_only_currency_is_taken_when_there_is_no_rub(account, monkeypatch):
    monkeypatch.setattr(IdgtlClient, "get_balance", lambda client: {"USD": "1200.005"})
    assert account_balance_poll(account=account) == Outcome.READ
    assert (state(account).balance, state(account).balance_currency) == (Decimal("1200.00"), "USD")


def test_a_mail_that_fails_is_tried_again_at_the_next_poll(account, idgtl, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("SMTP server down")

    monkeypatch.setattr(balance, "mail_admins", broken)
    assert poll(account, idgtl, 10) == Outcome.ALERT_NOT_SENT
    assert state(account).low_balance_alert_sent_at is None
    monkeypatch.undo()
    assert poll(account, idgtl, 10) == Outcome.ALERTED
    assert len(mail.outbox) == 1


def test_saving_the_account_keeps_the_alert_state(account, idgtl):
    loaded = IdgtlAccount.objects.get(pk=account.pk)  # as the admin form or the settings sync holds it
    assert poll(account, idgtl, 10) == Outcome.ALERTED
    loaded.name = "renamed"
    loaded.save()
    account = state(account)
    assert account.name == "renamed" and account.low_balance_alert_sent_at is not None
    assert account.balance == Decimal("10.00")
    assert poll(account, idgtl, 10) == Outcome.READ and len(mail.outbox) == 1


def test_beat_reads_the_accounts_due_by_the_interval(account, idgtl, settings):
    settings.IDGTL_BALANCE_POLL_INTERVAL = 600
    keyless = IdgtlAccount.objects.create(name="no-keys")
    now = timezone.now()
    assert list(accounts_due(now)) == [account]  # never read; an account without keys is never asked
    idgtl.balance = 2000
    assert balances_poll() == {"default": Outcome.READ}
    assert balances_poll() == {}  # just read
    assert list(accounts_due(now + timedelta(seconds=300))) == []
    assert list(accounts_due(now + timedelta(seconds=601))) == [account]
    settings.IDGTL_BALANCE_POLL_INTERVAL = 0
    assert list(accounts_due(now + timedelta(days=1))) == []
    assert state(keyless).balance_checked_at is None


def test_the_beat_task_never_fails(account, idgtl, monkeypatch, caplog):
    def crash(*, account):
        raise RuntimeError("a bug")

    monkeypatch.setattr(balance, "account_balance_poll", crash)
    assert poll_balances.apply().get() == {"default": Outcome.ERROR}
    monkeypatch.setattr(balance, "accounts_due", lambda now: 1 / 0)
    assert poll_balances.apply().get() == {}
    assert any("polling the i-dgtl balances failed" in r.getMessage() for r in caplog.records)


def test_beat_schedules_the_poll():
    from b24sms.celery import BEAT_SCHEDULE, app

    entry = BEAT_SCHEDULE["idgtl-poll-balances"]
    assert entry["task"] in app.tasks and entry["schedule"].run_every == timedelta(seconds=60)


def test_an_account_without_keys_read_by_hand_records_the_error(db, admins):
    keyless = IdgtlAccount.objects.create(name="no-keys")
    assert account_balance_poll(account=keyless) == Outcome.ERROR
    assert "No i-dgtl API key" in state(keyless).balance_error


# --- Shown: the account list, the start page, /metrics ----------------------------------------------
def test_the_account_list_shows_the_balance_low_and_the_error(admin_client, account, idgtl):
    poll(account, idgtl, 1234.5)
    url = reverse("admin:idgtl_idgtlaccount_changelist")
    page = admin_client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "1,234.50 RUB" in page and "b24-balance-low" not in page
    poll(account, idgtl, 900)
    idgtl.fail_next(5, 503)
    account_balance_poll(account=account)
    page = admin_client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "b24-balance-low" in page and "900.00 RUB" in page and "(below the threshold)" in page
    assert "Last read failed:" in page and "b24-balance-error" in page
    change = admin_client.get(
        reverse("admin:idgtl_idgtlaccount_change", args=[account.pk]), HTTP_ACCEPT_LANGUAGE="en"
    ).content.decode()
    assert 'name="low_balance_threshold"' in change and "503" in change


def test_the_account_list_in_russian(admin_client, account, idgtl):
    poll(account, idgtl, 900)
    page = admin_client.get(reverse("admin:idgtl_idgtlaccount_changelist"), HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "Баланс" in page and "(ниже порога)" in page and "900,00 RUB" in page


def test_the_read_balance_action(admin_client, account, idgtl):
    idgtl.balance = 3000
    response = admin_client.post(
        reverse("admin:idgtl_idgtlaccount_changelist"),
        {"action": "read_balance", "_selected_action": [account.pk]},
        follow=True,
        HTTP_ACCEPT_LANGUAGE="en",
    )
    assert "efault: balance 3000.00 RUB." in response.content.decode()
    assert state(account).balance == Decimal("3000.00")


def test_the_start_page_shows_each_balance(admin_client, account, idgtl):
    poll(account, idgtl, 900)
    IdgtlAccount.objects.create(name="never-read", messages_key="a2V5")
    html = admin_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    section = html[html.index('id="dash-balances"') :]
    section = section[: section.index("</table>")]
    assert "default" in section and "900.00 RUB" in section and "below the threshold of 1,000.00" in section
    assert "never-read" in section and "never read" in section
    idgtl.fail_next(5, 503)
    account_balance_poll(account=account)
    html = admin_client.get("/admin/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Last read failed:" in html


def test_the_start_page_hides_balances_from_who_may_not_view_accounts(client, django_user_model, account):
    user = django_user_model.objects.create_user(username="plain-staff", password="x-pass-123", is_staff=True)
    client.force_login(user)
    assert 'id="dash-balances"' not in client.get("/admin/").content.decode()


@pytest.fixture
def metric_store(settings):
    settings.REDIS_URL = ""
    metrics.store().clear()
    yield
    metrics.store().clear()


def test_metrics_export_a_gauge_per_account(client, account, idgtl, metric_store):
    poll(account, idgtl, 1234.5)
    failing = IdgtlAccount.objects.create(name="failing", messages_key="a2V5", low_balance_threshold=Decimal("50"))
    IdgtlAccount.objects.filter(pk=failing.pk).update(balance_error="HTTP 503")
    samples = scrape(client, REMOTE_ADDR="127.0.0.1")
    assert value(samples, "b24sms_idgtl_balance", account="default", currency="RUB") == 1234.5
    assert value(samples, "b24sms_idgtl_balance", account="failing", currency="") is None  # never read
    assert value(samples, "b24sms_idgtl_balance_low_threshold", account="default") == 1000
    assert value(samples, "b24sms_idgtl_balance_low_threshold", account="failing") == 50
    assert 0 <= value(samples, "b24sms_idgtl_balance_age_seconds", account="default") < 60
    assert value(samples, "b24sms_idgtl_balance_age_seconds", account="failing") == -1
    assert value(samples, "b24sms_idgtl_balance_read_error", account="default") == 0
    assert value(samples, "b24sms_idgtl_balance_read_error", account="failing") == 1
    assert value(samples, "b24sms_scrape_ok", part="database") == 1


def test_the_threshold_is_set_in_the_admin_and_never_negative(admin_client, account, idgtl):
    poll(account, idgtl, 900)  # alert sent meanwhile: the form's save must not re-arm it
    url = reverse("admin:idgtl_idgtlaccount_change", args=[account.pk])
    data = {
        "name": account.name,
        "api_url": account.api_url,
        "sender_names_key": "",
        "messages_key": "",
        "is_default": "on",
    }
    response = admin_client.post(url, {**data, "low_balance_threshold": "-1"}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 200 and "greater than or equal to 0" in response.content.decode()
    assert state(account).low_balance_threshold == Decimal("1000.00")
    response = admin_client.post(url, {**data, "low_balance_threshold": "500"})
    assert response.status_code == 302, response.content.decode()[:2000]
    account = state(account)
    assert account.low_balance_threshold == Decimal("500.00")
    assert account.low_balance_alert_sent_at is not None and account.balance == Decimal("900.00")
    assert poll(account, idgtl, 900) == Outcome.REARMED  # 900 is above the new threshold
