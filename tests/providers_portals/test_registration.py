"""Providers: validation, registration on portals (add / already installed / update / remove), check."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from bitrix24.client import Bitrix24AccessDenied, Bitrix24TransientError
from providers.models import InstallationState, Provider, ProviderRegistration, RegistrationState
from providers.services import registration as services

pytestmark = pytest.mark.django_db


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """Run the tasks enqueued on commit (eager in unit tests) when the block ends."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def make_provider(approved_sender_name, **overrides):
    values = {"code": "acme.sms", "name": "Acme SMS", "sender_name_application": approved_sender_name}
    values.update(overrides)
    return services.provider_create(**values)


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["", "acme sms", "acme/sms", "кириллица", "a" * 129])
def test_code_must_follow_the_bitrix24_charset_and_length(approved_sender_name, code):
    with pytest.raises(ValidationError) as info:
        make_provider(approved_sender_name, code=code)
    assert "code" in info.value.error_dict
    assert not Provider.objects.exists()


def test_code_of_128_allowed_characters_is_accepted(approved_sender_name):
    code = ("Ab0._-" * 22)[:128]
    assert make_provider(approved_sender_name, code=code).code == code


def test_sender_name_comes_from_an_approved_application(approved_sender_name):
    provider = make_provider(approved_sender_name)
    assert provider.sender_name == "ACMESHOP"
    assert provider.sender_name_application == approved_sender_name


@pytest.mark.parametrize("change", [{"status": "MODERATION"}, {"date_from": timezone.now() + timedelta(days=2)}])
def test_sender_name_application_not_approved_or_not_started_is_refused(approved_sender_name, change):
    for key, value in change.items():
        setattr(approved_sender_name, key, value)
    approved_sender_name.save()
    with pytest.raises(ValidationError) as info:
        make_provider(approved_sender_name)
    assert "sender_name_application" in info.value.error_dict


@pytest.mark.parametrize(
    "sender_name, ok", [("OUTSIDE", True), ("", False), ("AB", False), ("TOOLONGNAME12", False), ("Имя", False)]
)
def test_typed_sender_name_for_a_name_registered_outside(db, sender_name, ok):
    if ok:
        assert services.provider_create(code="x", name="X", sender_name=sender_name).sender_name == sender_name
    else:
        with pytest.raises(ValidationError) as info:
            services.provider_create(code="x", name="X", sender_name=sender_name)
        assert "sender_name" in info.value.error_dict


@pytest.mark.parametrize("translations", [{"english": "x"}, {"en": ""}, ["en"], {"en": "x" * 501}])
def test_name_translations_are_checked(approved_sender_name, translations):
    with pytest.raises(ValidationError) as info:
        make_provider(approved_sender_name, name_translations=translations)
    assert "name_translations" in info.value.error_dict


def test_duplicate_code_is_refused(approved_sender_name):
    make_provider(approved_sender_name)
    with pytest.raises(ValidationError) as info:
        make_provider(approved_sender_name)
    assert "code" in info.value.error_dict


# --- registration ----------------------------------------------------------------------------------


def test_register_adds_the_provider_with_our_handler_url(
    approved_sender_name, make_installation, portal, public_base_url, run_on_commit
):
    installation = make_installation()
    with run_on_commit():
        provider = make_provider(
            approved_sender_name,
            name_translations={"RU": "Акме СМС", "en": "Acme SMS"},
            description="Gateway",
            installations=[installation],
        )

    sent = portal.providers[installation.pk]["acme.sms"]
    assert sent == {
        "CODE": "acme.sms",
        "TYPE": "SMS",
        "HANDLER": f"https://sms.example.com/b24/handler/{installation.handler_secret}/",
        "NAME": {"ru": "Акме СМС", "en": "Acme SMS"},
        "DESCRIPTION": "Gateway",
    }
    assert services.registration_handler_url(installation) == sent["HANDLER"]
    registration = ProviderRegistration.objects.get(provider=provider)
    assert registration.state == RegistrationState.REGISTERED
    assert registration.registered_at is not None


def test_already_installed_falls_back_to_update(approved_sender_name, make_installation, portal, run_on_commit):
    installation = make_installation()
    portal.providers[installation.pk] = {
        "acme.sms": {"CODE": "acme.sms", "NAME": "old", "HANDLER": "https://old.example/"}
    }
    with run_on_commit():
        make_provider(approved_sender_name, installations=[installation])

    methods = [c[1] for c in portal.calls]
    assert methods == ["messageservice.sender.add", "messageservice.sender.update"]
    assert portal.providers[installation.pk]["acme.sms"]["NAME"] == "Acme SMS"
    assert "TYPE" not in portal.calls[1][2]
    assert ProviderRegistration.objects.get().state == RegistrationState.REGISTERED


def test_register_on_every_active_portal_by_default_and_repeat_is_harmless(
    approved_sender_name, make_installation, portal, run_on_commit
):
    first, second = make_installation(), make_installation()
    make_installation(state=InstallationState.REMOVED)
    provider = make_provider(approved_sender_name)
    with run_on_commit():
        services.provider_register(provider=provider)
    with run_on_commit():
        services.provider_register(provider=provider)  # a redelivered or repeated request

    assert set(portal.providers) == {first.pk, second.pk}
    assert list(provider.registrations.values_list("state", flat=True)) == [RegistrationState.REGISTERED] * 2


def test_register_on_an_inactive_installation_is_refused(approved_sender_name, make_installation):
    removed = make_installation(state=InstallationState.NEEDS_REINSTALL)
    provider = make_provider(approved_sender_name)
    with pytest.raises(ValidationError) as info:
        services.provider_register(provider=provider, installations=[removed])
    assert "installations" in info.value.error_dict
    assert not ProviderRegistration.objects.exists()


def test_permanent_error_fails_the_registration_with_the_error(
    approved_sender_name, make_installation, portal, run_on_commit
):
    portal.fail("messageservice.sender.add", Bitrix24AccessDenied("ACCESS_DENIED", "Access denied!"))
    installation = make_installation()
    with run_on_commit():
        make_provider(approved_sender_name, installations=[installation])

    registration = ProviderRegistration.objects.get()
    assert registration.state == RegistrationState.FAILED
    assert registration.last_error == "ACCESS_DENIED: Access denied!"


def test_transient_error_is_retried_then_fails_on_the_last_attempt(approved_sender_name, make_installation, portal):
    installation = make_installation()
    provider = make_provider(approved_sender_name)
    registration = ProviderRegistration.objects.create(provider=provider, installation=installation)
    portal.fail(
        "messageservice.sender.add", Bitrix24TransientError("QUERY_LIMIT_EXCEEDED", "Too many requests"), times=2
    )

    with pytest.raises(Bitrix24TransientError):
        services.registration_sync(registration_id=registration.pk, final_attempt=False)
    registration.refresh_from_db()
    assert registration.state == RegistrationState.PENDING

    assert services.registration_sync(registration_id=registration.pk, final_attempt=True) == RegistrationState.FAILED
    registration.refresh_from_db()
    assert "QUERY_LIMIT_EXCEEDED" in registration.last_error


def test_task_retries_a_transient_error(approved_sender_name, make_installation, portal, monkeypatch):
    from providers.tasks import registration as tasks

    installation = make_installation()
    provider = make_provider(approved_sender_name)
    registration = ProviderRegistration.objects.create(provider=provider, installation=installation)
    portal.fail("messageservice.sender.add", Bitrix24TransientError("QUERY_LIMIT_EXCEEDED", "Too many requests"))
    monkeypatch.setattr(tasks, "RETRY_BASE_SECONDS", 0)

    tasks.register_provider.apply(args=(registration.pk,), throw=False)

    assert [c[1] for c in portal.calls] == ["messageservice.sender.add"] * 2
    registration.refresh_from_db()
    assert registration.state == RegistrationState.REGISTERED


def test_edit_is_pushed_with_update_and_re_added_when_not_found(
    approved_sender_name, make_installation, portal, run_on_commit
):
    kept, lost = make_installation(), make_installation()
    with run_on_commit():
        provider = make_provider(approved_sender_name, installations=[kept, lost])
    portal.providers[lost.pk].clear()  # e.g. the application was updated on that portal
    portal.calls.clear()

    with run_on_commit():
        services.provider_update(provider=provider, name="Acme Messages", description_translations={"en": "Gateway"})

    assert portal.providers[kept.pk]["acme.sms"]["NAME"] == "Acme Messages"
    assert portal.providers[kept.pk]["acme.sms"]["DESCRIPTION"] == {"en": "Gateway"}
    assert portal.providers[lost.pk]["acme.sms"]["NAME"] == "Acme Messages"
    assert sorted(c[1] for c in portal.calls) == [
        "messageservice.sender.add",
        "messageservice.sender.update",
        "messageservice.sender.update",
    ]
    assert set(provider.registrations.values_list("state", flat=True)) == {RegistrationState.REGISTERED}


def test_sender_name_change_alone_is_not_pushed(approved_sender_name, make_installation, portal, run_on_commit):
    installation = make_installation()
    with run_on_commit():
        provider = make_provider(approved_sender_name, installations=[installation])
    portal.calls.clear()
    with run_on_commit():
        services.provider_update(provider=provider, sender_name_application=None, sender_name="OTHERNAME")
    assert portal.calls == []
    assert Provider.objects.get().sender_name == "OTHERNAME"


def test_code_cannot_change_while_registered(approved_sender_name, make_installation, portal, run_on_commit):
    with run_on_commit():
        provider = make_provider(approved_sender_name, installations=[make_installation()])
    with pytest.raises(ValidationError) as info:
        services.provider_update(provider=provider, code="renamed")
    assert "code" in info.value.error_dict


def test_remove_deletes_on_the_portal_and_not_found_counts_as_removed(
    approved_sender_name, make_installation, portal, run_on_commit
):
    first, second = make_installation(), make_installation()
    with run_on_commit():
        provider = make_provider(approved_sender_name, installations=[first, second])
    portal.providers[second.pk].clear()

    with run_on_commit():
        services.provider_unregister(provider=provider)

    assert portal.providers[first.pk] == {} and portal.providers[second.pk] == {}
    assert set(provider.registrations.values_list("state", flat=True)) == {RegistrationState.REMOVED}


def test_delete_provider_deletes_it_on_its_portals(approved_sender_name, make_installation, portal, run_on_commit):
    installation = make_installation()
    with run_on_commit():
        provider = make_provider(approved_sender_name, installations=[installation])
    with run_on_commit():
        services.provider_delete(provider=provider)
    assert not Provider.objects.exists()
    assert portal.providers[installation.pk] == {}


# --- check -------------------------------------------------------------------------------------------


def test_check_shows_drift_both_ways(approved_sender_name, make_installation, portal, run_on_commit):
    good, drifted = make_installation(), make_installation()
    with run_on_commit():
        provider = make_provider(approved_sender_name, installations=[good, drifted])
    portal.providers[drifted.pk].clear()
    portal.providers[drifted.pk]["stranger"] = {"CODE": "stranger"}

    results = {r["installation_id"]: r for r in services.provider_check(provider=provider)}

    assert results[good.pk]["present_on_portal"] is True
    assert results[good.pk]["missing_on_portal"] == [] and results[good.pk]["unknown_on_portal"] == []
    assert results[drifted.pk]["present_on_portal"] is False
    assert results[drifted.pk]["missing_on_portal"] == ["acme.sms"]
    assert results[drifted.pk]["unknown_on_portal"] == ["stranger"]
    registration = provider.registrations.get(installation=drifted)
    assert registration.state == RegistrationState.FAILED
    assert "Not found on the portal" in registration.last_error
    assert registration.checked_at is not None


def test_check_reports_a_failing_portal(approved_sender_name, make_installation, portal, run_on_commit):
    installation = make_installation()
    with run_on_commit():
        provider = make_provider(approved_sender_name, installations=[installation])
    portal.fail("messageservice.sender.list", Bitrix24AccessDenied("ACCESS_DENIED", "Access denied!"))

    [result] = services.provider_check(provider=provider)

    assert result["error"] == "ACCESS_DENIED: Access denied!"
    assert result["present_on_portal"] is None
    assert provider.registrations.get().state == RegistrationState.REGISTERED


# --- registrations whose task was lost ------------------------------------------------------------


def _age(registration, seconds):
    ProviderRegistration.objects.filter(pk=registration.pk).update(
        updated_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_a_registration_whose_task_was_lost_is_asked_for_again(
    approved_sender_name, make_installation, portal, run_on_commit, monkeypatch
):
    from providers.tasks import registration as tasks

    stuck_install, fresh_install, leaving_install = make_installation(), make_installation(), make_installation()
    provider = make_provider(approved_sender_name)
    delays = {task: task.delay for task in (tasks.register_provider, tasks.remove_provider_registration)}
    for task in delays:
        monkeypatch.setattr(task, "delay", lambda *a: None)  # the broker loses them
    with run_on_commit():
        services.provider_register(provider=provider)
    portal.providers[leaving_install.pk] = {"acme.sms": {"CODE": "acme.sms"}}
    with run_on_commit():
        services.provider_unregister(provider=provider, installations=[leaving_install])
    assert not portal.calls
    stuck, fresh, leaving = (
        ProviderRegistration.objects.get(installation=i) for i in (stuck_install, fresh_install, leaving_install)
    )
    _age(stuck, 901)
    _age(leaving, 901)
    _age(fresh, 60)  # its task may still be retrying
    for task, delay in delays.items():
        monkeypatch.setattr(task, "delay", delay)

    with run_on_commit():
        assert tasks.resume_stuck_registrations() == {"register": 1, "remove": 1}
    assert [c[1] for c in portal.calls] == ["messageservice.sender.add", "messageservice.sender.delete"]
    states = dict(ProviderRegistration.objects.values_list("installation", "state"))
    assert states == {
        stuck_install.pk: RegistrationState.REGISTERED,
        fresh_install.pk: RegistrationState.PENDING,
        leaving_install.pk: RegistrationState.REMOVED,
    }
    with run_on_commit():
        assert tasks.resume_stuck_registrations() == {"register": 0, "remove": 0}  # nothing left, nothing twice
