"""Rows for an installed portal with a registered provider, and HANDLER bodies as Bitrix24 sends them."""

import urllib.parse

import pytest

from providers.models import BitrixApplication, Installation, Provider, ProviderRegistration, RegistrationState

APPLICATION_TOKEN = "51856fefc120afa4b628cc82d3935cce"
MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"


@pytest.fixture
def installation(db):
    application = BitrixApplication.objects.create(
        name="app", client_id="local.1.2", client_secret="s", is_default=True
    )
    return Installation.objects.create(
        application=application,
        member_id=MEMBER_ID,
        domain="acme.bitrix24.test",
        client_endpoint="https://acme.bitrix24.test/rest/",
        access_token="at",
        refresh_token="rt",
        application_token=APPLICATION_TOKEN,
    )


@pytest.fixture
def provider(installation):
    provider = Provider.objects.create(code="provider1", name="SMS", sender_name="MyShop")
    ProviderRegistration.objects.create(
        provider=provider, installation=installation, state=RegistrationState.REGISTERED
    )
    return provider


def crm_fields(**overrides) -> dict:
    fields = {
        "module_id": "crm",
        "bindings[0][OWNER_TYPE_ID]": "3",
        "bindings[0][OWNER_ID]": "123",
        "properties[phone_number]": "+7 999 000-00-01",
        "properties[message_text]": "Your code: 1234",
        "type": "SMS",
        "code": "provider1",
        "message_id": "65575980fa531ac284c2ee68f81ebebd",
        "message_to": "+7 999 000-00-01",
        "message_body": "Your code: 1234",
        "ts": "1742895600",
        "auth[access_token]": "s6p6token",
        "auth[expires_in]": "3600",
        "auth[domain]": "acme.bitrix24.test",
        "auth[member_id]": MEMBER_ID,
        "auth[user_id]": "1",
        "auth[application_token]": APPLICATION_TOKEN,
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def bizproc_fields(**overrides) -> dict:
    fields = crm_fields(**{"module_id": "bizproc", "bindings[0][OWNER_TYPE_ID]": None, "bindings[0][OWNER_ID]": None})
    fields.update(
        {
            "workflow_id": "59ce38567ff2a5.26351167",
            "document_id[0]": "crm",
            "document_id[1]": "CCrmDocumentLead",
            "document_id[2]": "LEAD_98",
            "document_type[0]": "crm",
            "document_type[1]": "CCrmDocumentLead",
            "document_type[2]": "LEAD",
        }
    )
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def without_auth(fields: dict) -> dict:
    return {k: v for k, v in fields.items() if not k.startswith("auth[")}


def encode(fields: dict, *, raw_brackets: bool = False) -> bytes:
    """http_build_query: brackets percent-encoded (%5B/%5D) unless ``raw_brackets``."""
    body = urllib.parse.urlencode(fields)
    if raw_brackets:
        body = body.replace("%5B", "[").replace("%5D", "]")
    return body.encode()


@pytest.fixture
def account(db):
    from idgtl.services import account_get_default

    account = account_get_default()
    account.api_url = "http://idgtl.invalid/api/v1"
    account.messages_key = "bWVzc2FnZXM6a2V5"
    account.save()
    return account


class RecordingIdgtl:
    """IdgtlClient stand-in at its boundary: records calls, answers what the test queued."""

    def __init__(self):
        self.sent: list[list[dict]] = []
        self.lookups: list[dict] = []
        self.send_answers: list = []  # dicts to return or exceptions to raise, in order
        self.known: list[dict] = []  # what GET /message returns

    def for_messages(self, account):
        return self

    def close(self):
        pass

    def send_messages(self, messages, *, before_attempt=None):
        if before_attempt is not None:
            before_attempt()  # the sender's lease check, as the real client runs it before each attempt
        self.sent.append(messages)
        answer = self.send_answers.pop(0) if self.send_answers else None
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            answer = {
                "errors": False,
                "items": [{"code": 201, "messageUuid": f"uuid-{m['externalMessageId']}"} for m in messages],
            }
        return answer

    def get_messages(self, **kwargs):
        self.lookups.append(kwargs)
        items = self.known
        if kwargs.get("message_uuids"):
            items = [i for i in items if i["messageUuid"] in kwargs["message_uuids"]]
        page, per_page = kwargs.get("page", 1), kwargs.get("per_page", 100)
        return {"total": len(items), "items": items[(page - 1) * per_page : page * per_page]}


@pytest.fixture
def idgtl_api(monkeypatch, account):
    fake = RecordingIdgtl()
    monkeypatch.setattr("idgtl.client.IdgtlClient.for_messages", fake.for_messages)
    return fake


def make_message(installation, provider, n: int = 1, **fields):
    from providers.models import Message

    values = {
        "module_id": "crm",
        "message_to": f"+7999000{n:04d}",
        "destination": f"7999000{n:04d}",
        "text": f"text {n}",
        "sender_name": provider.sender_name,
    }
    values.update(fields)
    return Message.objects.create(installation=installation, provider=provider, message_id=f"m{n:031d}", **values)
