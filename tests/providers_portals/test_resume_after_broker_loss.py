"""Registrations whose task a Redis restart lost are asked for again at the next sweep, not 15 minutes later.

The beat job resumes a pending registration after REGISTRATION_RESUME_AFTER (longer than a task's own
retries, so one waiting for its retry is not doubled). A Redis restarted empty loses every queued task
and every retry it held: the sweep notices (a marker key it keeps in the broker is gone) and asks again
at once for what was pending before that Redis started, and for nothing asked after it.
A Redis server of the test's own, restarted for real.
"""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from providers.models import ProviderRegistration, RegistrationState
from providers.services import registration as services

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_is_private_redis(private_redis, monkeypatch):
    """The Celery app's broker is the test's own Redis, and tasks are not run inline."""
    from b24sms.celery import app

    monkeypatch.setenv("CELERY_BROKER_URL", private_redis.url(3))  # Celery reads the variable first
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    return private_redis


@pytest.fixture
def asked(monkeypatch):
    """The ids register_provider was enqueued for (nothing reaches the broker)."""
    from providers.tasks import registration as tasks

    ids = []
    monkeypatch.setattr(tasks.register_provider, "delay", lambda registration_id: ids.append(registration_id))
    return ids


def _pending(make_installation, provider, seconds_ago: float) -> ProviderRegistration:
    registration = ProviderRegistration.objects.create(
        provider=provider, installation=make_installation(), state=RegistrationState.PENDING
    )
    ProviderRegistration.objects.filter(pk=registration.pk).update(
        updated_at=timezone.now() - timedelta(seconds=seconds_ago)
    )
    return registration


def test_the_broker_reports_a_loss_once_per_sweep(broker_is_private_redis):
    from common.taskqueue import broker_messages_lost_at

    first = broker_messages_lost_at("registrations")  # no marker yet: everything before this Redis started
    assert first is not None and timezone.now() - first < timedelta(seconds=30)
    assert broker_messages_lost_at("registrations") is None
    assert broker_messages_lost_at("another-sweep") is not None  # each sweep keeps its own marker
    before_restart = timezone.now()
    broker_is_private_redis.restart_empty()
    lost_at = broker_messages_lost_at("registrations")
    assert lost_at is not None and before_restart - timedelta(seconds=1) <= lost_at <= timezone.now()
    assert broker_messages_lost_at("registrations") is None


def test_the_embedded_broker_and_inline_tasks_lose_nothing(settings, monkeypatch):
    from b24sms.celery import app
    from common.taskqueue import broker_messages_lost_at

    monkeypatch.setenv("CELERY_BROKER_URL", "b24sqla+sqlite:///unused.sqlite3")
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    assert broker_messages_lost_at("registrations") is None
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")  # never asked: tasks run inline
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    assert broker_messages_lost_at("registrations") is None


def test_registrations_pending_when_redis_restarted_empty_are_asked_for_at_once(
    broker_is_private_redis, make_installation, approved_sender_name, asked, django_capture_on_commit_callbacks
):
    from providers.tasks.registration import resume_stuck_registrations

    provider = services.provider_create(code="acme.sms", name="Acme SMS", sender_name_application=approved_sender_name)
    # Pending since before this Redis started (however long the fixtures took), long before
    # REGISTRATION_RESUME_AFTER: only the "Redis came back empty" rule can ask for it now.
    first_sweep = _pending(
        make_installation, provider, seconds_ago=time.time() - broker_is_private_redis.started_at + 5
    )
    with django_capture_on_commit_callbacks(execute=True):
        resume_stuck_registrations()  # the first sweep on this Redis: pending since before it started
    assert asked == [first_sweep.pk]
    asked.clear()

    lost_task = _pending(make_installation, provider, seconds_ago=60)  # its task queued, then lost
    with django_capture_on_commit_callbacks(execute=True):
        assert resume_stuck_registrations() == {"register": 0, "remove": 0}  # nothing lost yet: its task may run
    broker_is_private_redis.restart_empty()
    time.sleep(2.1)  # Redis tells its uptime in whole seconds: a restart is placed a second late at most
    asked_after_restart = _pending(make_installation, provider, seconds_ago=0)  # its task is in the new Redis
    with django_capture_on_commit_callbacks(execute=True):
        assert resume_stuck_registrations() == {"register": 2, "remove": 0}
    assert sorted(asked) == sorted([first_sweep.pk, lost_task.pk])
    assert asked_after_restart.pk not in asked
    asked.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert resume_stuck_registrations() == {"register": 0, "remove": 0}  # each once
    assert asked == []


def test_work_asked_for_in_the_second_redis_restarted_in_is_asked_for_again(monkeypatch):
    """Redis's uptime is whole seconds counted from the whole second it started in: 3 s means it started
    between about 4 and 2 s ago. A registration touched 2.5 s ago may have lost its task: the loss is
    placed at the latest bound, so it is asked for again (at worst a task is asked for twice: harmless)."""
    from b24sms.celery import app
    from common import taskqueue

    class Restarted:
        def set(self, *args, **kwargs):
            return True  # no marker: the broker lost its contents

        def info(self, section):
            return {"uptime_in_seconds": 3}

        def close(self):
            pass

    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    monkeypatch.setattr(taskqueue.redis.Redis, "from_url", staticmethod(lambda *a, **kw: Restarted()))
    touched = timezone.now() - timedelta(seconds=2.5)
    lost_at = taskqueue.broker_messages_lost_at("registrations")
    assert touched < lost_at <= timezone.now()
