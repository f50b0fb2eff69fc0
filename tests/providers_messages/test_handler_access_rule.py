"""One statement of who may post to the HANDLER (intake.HANDLER_ACCESS_RULE), read by both paths: the
one-statement SQL of PostgreSQL and the general path's check must accept and refuse the same calls."""

import pytest

from providers.handler_form import handler_form_parse
from providers.models import InstallationState, Message
from providers.services import intake
from tests.providers_messages.conftest import APPLICATION_TOKEN, MEMBER_ID, crm_fields, encode

CASES = {
    "valid, with auth": ({}, None),
    "valid, without auth (a robot)": ({"drop_auth": True}, None),
    "wrong application token": ({"auth[application_token]": APPLICATION_TOKEN[::-1]}, "Wrong application token."),
    "empty application token": ({"auth[application_token]": ""}, "Wrong application token."),
    "another portal": ({"auth[member_id]": "f" * 32}, "The call comes from another portal."),
    "no member_id in auth": ({"auth[member_id]": ""}, None),
    "uninstalled portal": ({"state": InstallationState.REMOVED}, "The application is not installed on this portal."),
}


def _call(installation, case):
    overrides, _refusal = CASES[case]
    overrides = dict(overrides)
    if "state" in overrides:
        installation.state = overrides.pop("state")
        installation.save(update_fields=["state"])
    fields = crm_fields(
        message_id=f"rule-{abs(hash(case))}", **{k: v for k, v in overrides.items() if k != "drop_auth"}
    )
    if overrides.get("drop_auth"):
        fields = {k: v for k, v in fields.items() if not k.startswith("auth[")}
    return handler_form_parse(encode(fields))


def _general_path_refusal(installation, form):
    try:
        intake._check_call(installation, secret=installation.handler_secret, form=form)
    except intake.HandlerForbidden as exc:
        return str(exc)
    return None


@pytest.mark.django_db
@pytest.mark.parametrize("case", CASES)
def test_the_general_path_applies_the_rule(installation, provider, case):
    form = _call(installation, case)
    assert _general_path_refusal(installation, form) == CASES[case][1]


@pytest.mark.django_db
def test_a_wrong_secret_fails_the_first_condition(installation, provider):
    form = _call(installation, "valid, with auth")
    with pytest.raises(intake.HandlerForbidden, match="Unknown handler"):
        intake._check_call(installation, secret="x" * 43, form=form)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", CASES)
def test_the_one_statement_accepts_exactly_what_the_general_path_accepts(installation, provider, case):
    from django.db import connection

    assert connection.vendor == "postgresql"
    assert installation.member_id == MEMBER_ID
    form = _call(installation, case)
    stored = intake._accept_in_one_statement(secret=installation.handler_secret, form=form)
    assert stored == (_general_path_refusal(installation, form) is None)
    assert Message.objects.filter(message_id=form.message_id).exists() == stored
