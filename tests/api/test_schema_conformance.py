"""The API is its schema: schemathesis against the live test server, every operation, every check.

The same run as the README's ``st run`` command (``--checks all``, a fixed seed, bounded examples), through
schemathesis's Python API (its engine, which the CLI drives), over real HTTP against Django's ``live_server``
as an authenticated superuser. The database holds a portal (on the fake Bitrix24), a provider registered
on it, a delivered and an undelivered message (with their timeline and usage), an approved sender-name
application with a document, a name filed with two operators (submitted to the fake i-dgtl) and a tariff;
path ids are drawn half of the time from those rows, so operations reach their real code paths and not only
404s. Outbound calls go to the fakes; a connection anywhere else fails the test.

It runs on the suite's database: SQLite by default, PostgreSQL when DATABASE_URL points at it (CI);
``test_conformance_on_sqlite_too`` (integration) repeats it on SQLite in a child pytest in that case, so CI
covers both. Any failure fails the test, listed by operation with the request that reproduces it.
"""

import datetime as dt
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.fixtures.documents import PDF_BYTES

pytestmark = pytest.mark.django_db(transaction=True)  # the live server's thread must see the rows

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = int(os.environ.get("B24SMS_SCHEMATHESIS_MAX_EXAMPLES", "8"))  # schemathesis.toml's
SENDER_NAME = "ACMESHOP"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


# Path ids drawn half of the time from the rows of ``api_world`` (the other half as schemathesis likes, out of
# range included), so the operations on one row reach their code and not only a 404.
ROW_IDS = {  # dictionary -> the operations whose {id} it fills
    "applications": [
        "sender_names_retrieve",
        "sender_names_submit_create",
        "sender_names_refresh_create",
        "sender_names_set_status_create",
    ],
    "documented_application": ["sender_names_documents_retrieve"],
    "groups": ["sender_name_groups_retrieve", "sender_name_groups_add_brand_create"],
    "providers": [
        "providers_retrieve",
        "providers_update",
        "providers_partial_update",
        "providers_destroy",
        "providers_check_create",
        "providers_register_create",
        "providers_remove_create",
        "providers_test_sms_create",
    ],
    "portals": ["portals_retrieve", "portals_partial_update", "portals_statement_retrieve", "portals_usage_retrieve"],
    "messages": ["messages_retrieve"],
    "tariffs": ["tariffs_retrieve", "tariffs_update", "tariffs_partial_update", "tariffs_destroy"],
}


def schemathesis_config(world: dict):
    """The repository's schemathesis.toml (what ``st run`` reads: every check, the seed, the bound on
    examples), with the token, the examples per operation of this run and the rows' ids."""
    from schemathesis.config import SchemathesisConfig

    data = tomllib.loads((ROOT / "schemathesis.toml").read_text())
    data["dictionaries"] = {name: {"values": world[name]} for name in ROW_IDS}
    data["operations"] = data.get("operations", []) + [
        {"include-operation-id": operations, "parameters": {"path.id": {"dictionary": name, "probability": 0.5}}}
        for name, operations in ROW_IDS.items()
    ]
    data["operations"].append(
        {
            "include-operation-id": "sender_names_documents_retrieve",
            "parameters": {"path.document_id": {"dictionary": "documents", "probability": 0.5}},
        }
    )
    data["dictionaries"]["documents"] = {"values": world["documents"]}
    config = SchemathesisConfig.from_dict(data, base_dir=str(ROOT))
    # Connection: close: the live server's thread for a request ends with it, and closes its database connection
    config.projects.override.update(headers={"Authorization": f"Token {world['token']}", "Connection": "close"})
    config.projects.override.generation.update(max_examples=MAX_EXAMPLES)
    return config


def run_schemathesis(base_url: str, world: dict) -> tuple[list[str], dict]:
    """Run every phase against ``base_url``; the failures as readable texts and a few figures."""
    import schemathesis
    from schemathesis.engine import Status, events, from_schema

    config = schemathesis_config(world)
    schema = schemathesis.openapi.from_url(
        f"{base_url}/api/schema/?format=json", config=config, headers={"Authorization": f"Token {world['token']}"}
    )
    schema.config.update(base_url=base_url)
    failures, seen, errors, reached = [], set(), [], set()
    stats = {"operations": len(list(schema.get_all_operations())), "scenarios": 0, "cases": 0}
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            stats["scenarios"] += 1
            stats["cases"] += len(event.recorder.cases)
            phase = f"{event.phase.name.lower()}_cases"
            stats[phase] = stats.get(phase, 0) + len(event.recorder.cases)
            if os.environ.get("B24SMS_SCHEMATHESIS_STATS"):
                codes = sorted(str(i.response.status_code) for i in event.recorder.interactions.values() if i.response)
                print(
                    event.phase.name,
                    event.label,
                    len(event.recorder.cases),
                    round(event.elapsed_time, 1),
                    {code: codes.count(code) for code in set(codes)},
                )
            for case_id, interaction in event.recorder.interactions.items():
                case = event.recorder.cases[case_id].value
                if (
                    interaction.response
                    and interaction.response.status_code < 300
                    and (interaction.request.method == case.operation.method.upper())
                ):
                    reached.add(case.operation.label)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status != Status.FAILURE or check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    case = event.recorder.cases[case_id].value
                    key = (case.operation.label, check.name, failure.title)
                    if key in seen:
                        continue
                    seen.add(key)
                    interaction = event.recorder.interactions.get(case_id)
                    response = interaction.response if interaction else None
                    answer = (
                        f"HTTP {response.status_code}: {response.content[:300].decode(errors='replace')}"
                        if response is not None
                        else "no answer"
                    )
                    failures.append(
                        f"{case.operation.label} [{check.name}] {failure.title}\n"
                        f"    {failure.message.strip()[:600]}\n    {check.failure_info.code_sample}\n"
                        f"    {answer}"
                    )
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info.format()[:1500]}")
        elif isinstance(event, events.FatalError):
            errors.append(f"fatal: {event.exception!r}")
    stats["operations_answering_2xx"] = len(reached)
    return failures + errors, stats


@pytest.fixture
def outside_hosts(monkeypatch):
    """Hosts the run tried to reach that are not this machine (the fakes listen on 127.0.0.1): each is
    refused as an unknown name and recorded, and the test fails on any."""
    real, tried = socket.getaddrinfo, []

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            tried.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "only the fakes on 127.0.0.1 may be called")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return tried


@pytest.fixture
def api_world(live_server, settings, bitrix24, idgtl, installation_factory, django_user_model):
    """Rows every operation can reach: their ids by kind, and a superuser's API token."""
    from rest_framework.authtoken.models import Token

    from providers.models import Message, MessageState, ProviderRegistration, RegistrationState, Tariff
    from providers.services.registration import provider_create
    from providers.services.timeline import messages_change_state
    from sendernames.models import SenderNameApplication
    from sendernames.services import application_create, group_create

    settings.PUBLIC_BASE_URL = live_server.url
    user = django_user_model.objects.create_superuser("conformance", "conformance@example.com", "conformance-pass-1")
    portal = bitrix24.add_portal(client_id="local.conformance.1", client_secret="conformance-secret")
    installation = installation_factory(portal)
    idgtl.allowed_sender_names.add(SENDER_NAME)
    tomorrow = (dt.datetime.now(ZoneInfo("Europe/Moscow")) + dt.timedelta(days=1)).date().isoformat()
    fields = {
        "common_type": "SERVICE",
        "date_from": tomorrow,
        "sender_name": SENDER_NAME,
        "counteragent_name": "ООО Акме",
        "counteragent_inn": "7707083893",
    }
    application = application_create(
        brand="MTS", documents=[SimpleUploadedFile("charter.pdf", PDF_BYTES)], created_by=user, **fields
    )
    SenderNameApplication.objects.filter(pk=application.pk).update(
        status="APPROVED", date_from=dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    )
    group = group_create(brands=["BEELINE", "TELE2"], created_by=user, **fields).group  # submitted to the fake
    provider = provider_create(code="conformance", name="Conformance", sender_name_application=application)
    ProviderRegistration.objects.create(
        provider=provider, installation=installation, state=RegistrationState.REGISTERED
    )
    messages = []
    for n, (phone, final) in enumerate(
        (("+79001234567", MessageState.DELIVERED), ("+79990000000", MessageState.UNDELIVERED)), 1
    ):
        message = Message.objects.create(
            installation=installation,
            provider=provider,
            message_id=f"conformance{n:021d}",
            module_id="crm",
            message_to=phone,
            destination=phone[1:],
            text="Hello from the conformance run",
            sender_name=SENDER_NAME,
        )
        messages_change_state(messages=[message], state=MessageState.SENT, source="send")
        messages_change_state(messages=[message], state=final, source="callback")
        messages.append(message.pk)
    tariff = Tariff.objects.create(price_per_part="1.2500", valid_from=dt.date(2025, 1, 1))
    return {
        "token": Token.objects.create(user=user).key,
        "portals": [installation.pk],
        "providers": [provider.pk],
        "applications": [application.pk, *group.applications.values_list("pk", flat=True)],
        "documented_application": [application.pk],
        "documents": [application.documents.get().pk],
        "groups": [group.pk],
        "messages": messages,
        "tariffs": [tariff.pk],
    }


@pytest.mark.timeout(600)  # about a minute on an idle 2-core machine; more while other tests share it
def test_every_operation_conforms_to_the_schema(live_server, api_world, outside_hosts):
    failures, stats = run_schemathesis(live_server.url, api_world)
    print(f"schemathesis: {stats}")
    assert stats["operations"] >= 37 and stats["cases"] > stats["operations"] * 5, stats
    assert stats["operations_answering_2xx"] >= 30, stats  # the rows are reached, not only 404s and 400s
    assert not outside_hosts, f"the run tried to reach {sorted(set(outside_hosts))}"
    if failures:
        pytest.fail(f"{len(failures)} schemathesis failures ({stats}):\n\n" + "\n\n".join(failures), pytrace=False)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_conformance_on_sqlite_too(tmp_path):
    """Integration runs have the suite on PostgreSQL (CI): the same run on SQLite, in a child pytest with
    SQLite's test database."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'conformance.sqlite3'}"}
    test = f"{Path(__file__).relative_to(ROOT)}::test_every_operation_conforms_to_the_schema"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-20000:] + completed.stderr[-4000:]
