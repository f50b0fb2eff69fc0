"""Small builders of rows for the ops tests (dashboard, metrics)."""

import itertools

from providers.models import BitrixApplication, Installation, Message, Provider

_seq = itertools.count(1)


def make_installation(domain=None, **fields):
    application, _ = BitrixApplication.objects.get_or_create(
        client_id="local.ops.test", defaults={"name": "ops test", "client_secret": "s"}
    )
    n = next(_seq)
    domain = domain or f"portal{n}.bitrix24.ru"
    return Installation.objects.create(
        application=application,
        member_id=f"member{n}",
        domain=domain,
        client_endpoint=f"https://{domain}/rest/",
        **fields,
    )


def make_provider(code=None, **fields):
    return Provider.objects.create(code=code or f"prov{next(_seq)}", name="Provider", sender_name="ACME", **fields)


def make_message(*, state="received", installation=None, provider=None, created_at=None, counted=False, **fields):
    """A message in ``state``; ``counted``: in the usage rollups too, as the pipeline's state changes leave it."""
    installation = installation or Installation.objects.first() or make_installation()
    provider = provider or Provider.objects.first() or make_provider()
    message = Message.objects.create(
        installation=installation,
        provider=provider,
        message_id=f"m{next(_seq)}",
        module_id="crm",
        message_to="+79001234567",
        destination="79001234567",
        text="hello",
        sender_name="ACME",
        state=state,
        **fields,
    )
    if created_at is not None:
        Message.objects.filter(pk=message.pk).update(created_at=created_at)
        message.created_at = created_at
    if counted:
        from providers.services.usage import usage_record_state_change

        waiting = Message(
            installation=installation,
            provider=provider,
            created_at=message.created_at,
            sender_name=message.sender_name,
            parts=message.parts,
            state="received",
        )
        usage_record_state_change(messages=[waiting], state=state)
    return message
