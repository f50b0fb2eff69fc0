"""Log lines: JSON with message id, installation and provider bound by context; never a secret."""

import io
import json
import logging
import logging.config

import pytest

from common.logging import REDACTED, current_log_context, log_context, redact


@pytest.fixture
def json_log(settings):
    """The project's LOGGING config (JSON) writing into a buffer; returns a reader of parsed lines."""
    stream = io.StringIO()
    config = json.loads(json.dumps(settings.LOGGING, default=str))
    config["formatters"]["json"]["()"] = "common.logging.JsonFormatter"
    config["handlers"]["console"] = {
        "class": "logging.StreamHandler",
        "filters": ["context"],
        "formatter": "json",
        "stream": stream,
    }
    config["handlers"]["console"]["stream"] = stream
    logging.config.dictConfig(config)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    logging.config.dictConfig(settings.LOGGING)


def test_bound_context_appears_on_every_line_and_is_unbound_after(json_log):
    logger = logging.getLogger("providers.services.sending")
    with log_context(message_id=42, installation="acme.bitrix24.ru"):
        logger.info("sending")
        with log_context(provider="acme_sms"):
            logger.warning("i-dgtl answered 503, retrying")
        logger.info("sent")
    logger.info("idle")
    lines = json_log()
    assert [line["message"] for line in lines] == ["sending", "i-dgtl answered 503, retrying", "sent", "idle"]
    assert (
        lines[0]["message_id"] == 42 and lines[0]["installation"] == "acme.bitrix24.ru" and "provider" not in lines[0]
    )
    assert lines[1]["provider"] == "acme_sms" and lines[1]["message_id"] == 42 and lines[1]["levelname"] == "WARNING"
    assert "provider" not in lines[2]
    assert "message_id" not in lines[3] and current_log_context() == {}


def test_explicit_extra_wins_over_context(json_log):
    with log_context(message_id=1):
        logging.getLogger("x").info("other message", extra={"message_id": 2})
    assert json_log()[0]["message_id"] == 2


SECRETS = {
    "basic key": "c2VuZGVyOm5hbWVzLWtleS1zZWNyZXQ=",
    "access token": "f3a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4",
    "refresh token": "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d",
    "application token": "appl1cat10nT0ken55",
    "client secret": "QwErTyClientSecret123",
    "handler secret": "hNdLeRsEcReT-xyz_0987654321",
    "api token": "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b",
}


def test_no_secret_reaches_a_log_line(json_log, settings):
    settings.IDGTL_MESSAGES_TOKEN = "bWVzc2FnZXM6Y29uZmlndXJlZA=="
    logger = logging.getLogger("b24sms.test")
    s = SECRETS
    logger.info("GET /sender-names headers={'Authorization': 'Basic %s'}", s["basic key"])
    logger.info("Authorization: Bearer %s", s["access token"])
    logger.info(
        "refresh: grant_type=refresh_token&client_id=local.1&client_secret=%s&refresh_token=%s",
        s["client secret"],
        s["refresh token"],
    )
    logger.info(
        "install payload %s", {"auth": {"access_token": s["access token"], "application_token": s["application token"]}}
    )
    logger.info(
        "form auth%%5Baccess_token%%5D=%s&auth%%5Bapplication_token%%5D=%s", s["access token"], s["application token"]
    )
    logger.warning("Forbidden: /b24/handler/%s/", s["handler secret"])
    logger.warning("Forbidden: /b24/event/%s/", s["handler secret"])
    logger.info("callback at http://127.0.0.1:8000/idgtl/callback/%s/", s["handler secret"])
    logger.info(
        "call", extra={"params": {"auth": s["access token"]}, "headers": {"Authorization": "Token " + s["api token"]}}
    )
    logger.info(
        "body %s",
        json.dumps({"refresh_token": s["refresh token"], "nested": json.dumps({"client_secret": s["client secret"]})}),
    )
    logger.info("using the configured key %s", settings.IDGTL_MESSAGES_TOKEN)
    try:
        raise RuntimeError(f"401 with Authorization: Basic {s['basic key']} and access_token={s['access token']}")
    except RuntimeError:
        logger.exception("call failed")
    output = "\n".join(json.dumps(line) for line in json_log())
    for name, value in {**s, "configured": settings.IDGTL_MESSAGES_TOKEN}.items():
        assert value not in output, f"{name} leaked: {output}"
    assert output.count(REDACTED) >= 12


def test_redaction_keeps_ordinary_text():
    text = "token refreshed for portal acme.bitrix24.ru; message 17 delivered; grant_type=refresh_token"
    assert redact(text) == text


def test_text_format_shows_context(settings):
    from common.logging import ContextFilter, TextFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(TextFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("b24sms.texttest")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with log_context(message_id=7, provider="p1"):
            logger.info("refresh_token=abcdef123456")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().strip() == f"INFO refresh_token={REDACTED} [message_id=7 provider=p1]"


def test_celery_tasks_bind_what_they_work_on(json_log):
    from celery import shared_task

    from common.logging import bind_task_context, unbind_task_context

    @shared_task(name="tests.ops.report_statuses")
    def report_statuses(installation_id, time_budget=None):
        logging.getLogger("providers.tasks").info("reporting")

    bind_task_context(task_id="t-1", task=report_statuses, args=(7,), kwargs={})
    report_statuses.run(7)
    unbind_task_context(task_id="t-1")
    logging.getLogger("providers.tasks").info("after")
    first, after = json_log()
    assert first["installation"] == 7 and first["task"] == "tests.ops.report_statuses"
    assert "installation" not in after and "task" not in after


@pytest.mark.django_db(transaction=True)
def test_a_whole_message_flow_logs_no_secret(json_log, live_server, settings, idgtl, bitrix24, installation_factory):
    """Handler → i-dgtl → delivery callback → status report, everything logged at DEBUG: no secret in any line."""
    from providers.models import Message, Provider, ProviderRegistration, RegistrationState
    from providers.services.portal_access import portal_client
    from providers.services.test_sms import handler_url, provider_send_test_sms
    from tests.waiting import wait_until

    logging.getLogger().setLevel(logging.DEBUG)
    settings.PUBLIC_BASE_URL = live_server.url
    portal = bitrix24.add_portal(client_id="local.logs.1", client_secret="client-secret-for-logs-1")
    installation = installation_factory(portal)
    provider = Provider.objects.create(code="logs_sms", name="Logs", sender_name="ACME")
    portal_client(installation).sender_add("logs_sms", handler_url(installation), "Logs", "")
    ProviderRegistration.objects.create(
        provider=provider, installation=installation, state=RegistrationState.REGISTERED
    )
    idgtl.allowed_sender_names.add("ACME")
    bitrix24.expire_access_tokens(portal)  # the report will refresh the token: the OAuth call is logged too
    result = provider_send_test_sms(provider=provider, phone="+79001234567", text="secret-free")
    message = Message.objects.get(pk=result.message.pk)
    idgtl.set_message_status(message.idgtl_message_uuid, "delivered")
    wait_until(lambda: Message.objects.get(pk=message.pk).state == "delivered", timeout=20, message="delivered")
    installation.refresh_from_db()
    lines = json_log()
    output = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    assert len(lines) > 5
    secrets = {
        "i-dgtl messages key": idgtl.messages_key,
        "i-dgtl sender-names key": idgtl.sender_names_key,
        "client secret": "client-secret-for-logs-1",
        "handler secret": installation.handler_secret,
        "callback secret": installation.callback_secret,
        "application token": portal.application_token,
        "access token": installation.access_token,
        "refresh token": installation.refresh_token,
        "first access token": portal.admin_access_token,
    }
    for name, value in secrets.items():
        assert value and value not in output, f"{name} appears in the logs"


@pytest.mark.parametrize(
    "line, secret",
    [
        # Bitrix24's placement and install forms (and their dict reprs)
        (
            "POST /b24/install/ AUTH_ID=a1b2c3d4e5f6a7b8&AUTH_EXPIRES=3600&REFRESH_ID=r9s8t7u6v5w4&member_id=m1",
            "a1b2c3d4e5f6a7b8",
        ),
        (
            "POST /b24/install/ AUTH_ID=a1b2c3d4e5f6a7b8&AUTH_EXPIRES=3600&REFRESH_ID=r9s8t7u6v5w4&member_id=m1",
            "r9s8t7u6v5w4",
        ),
        ("form {'AUTH_ID': 'a1b2c3d4e5f6a7b8', 'PLACEMENT': 'DEFAULT'}", "a1b2c3d4e5f6a7b8"),
        ("APPLICATION_TOKEN=appl1cat10nT0ken55&PLACEMENT=DEFAULT", "appl1cat10nT0ken55"),
        (
            "auth[access_token]=f3a8b7c6d5e4&auth[refresh_token]=9a8b7c6d5e4f&auth[domain]=acme.bitrix24.ru",
            "f3a8b7c6d5e4",
        ),
        (
            "auth[access_token]=f3a8b7c6d5e4&auth[refresh_token]=9a8b7c6d5e4f&auth[domain]=acme.bitrix24.ru",
            "9a8b7c6d5e4f",
        ),
        # Passwords inside URLs: database, broker, cache, any scheme
        ("connecting to postgres://b24sms:Pg-Pa55w0rd@postgres:5432/b24sms", "Pg-Pa55w0rd"),
        ("Cannot connect to redis://:R3dis-Pa55@redis:6379/0: Connection refused.", "R3dis-Pa55"),
        ("broker amqp://guest:gu3st-secret@rabbit//", "gu3st-secret"),
        ("settings {'DATABASE_URL': 'postgresql://u:p%40ss-w0rd@db/x'}", "p%40ss-w0rd"),
        ("unencoded postgres://u:p@ss-w0rd@db/x", "ss-w0rd"),
    ],
)
def test_install_fields_and_url_passwords_are_redacted(line, secret):
    assert secret not in redact(line)
    assert REDACTED in redact(line)


def test_url_redaction_keeps_hosts_and_ordinary_urls():
    assert (
        redact("postgres://b24sms:pw-123456@postgres:5432/b24sms")
        == f"postgres://b24sms:{REDACTED}@postgres:5432/b24sms"
    )
    for text in (
        "https://acme.bitrix24.ru/rest/ answered 200",
        "http://127.0.0.1:8000/admin/",
        "AUTH_EXPIRES=3600",
        "https://evil.example\\@acme.bitrix24.ru/rest/ refused",
    ):
        assert redact(text) == text
