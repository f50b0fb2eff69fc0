"""Sandbox mode: the project's fake i-dgtl and fake Bitrix24 stand in for the real services.

`make run` (manage.py run_backoffice) turns it on when nothing real is configured: no i-dgtl key
(neither in the environment nor saved on the default account) and no Bitrix24 application.
B24SMS_SANDBOX=1 forces it on, B24SMS_SANDBOX=0 off. Production settings never run it
(production.py pins SANDBOX=False and `sandbox_decision` refuses that settings module).

In the sandbox, beside web, worker and beat, two more processes run (`manage.py sandbox_fake
idgtl|bitrix24`): the fake i-dgtl on 127.0.0.1:8101 and the fake Bitrix24 on 127.0.0.1:8102. Every
b24sms process gets the environment of `sandbox_environment()`, so b24sms talks to the fakes and
the fakes call b24sms back at PUBLIC_BASE_URL. The fake Bitrix24 process creates one portal and
installs b24sms on it through the real install endpoint, exactly as a portal administrator would.

Timelines (seconds, from the environment):
- B24SMS_SANDBOX_REVIEW_DELAY (default 20): a sender-name application leaves PRE_REVIEW for
  B24SMS_SANDBOX_REVIEW_STATUS (default APPROVED) this long after it was filed.
- B24SMS_SANDBOX_REVIEW_DELAY is spent twice: PRE_REVIEW -> REVIEW, then REVIEW -> the final status.
- B24SMS_SANDBOX_DELIVERY_DELAY (default 3): a sent SMS goes sending -> sent -> delivered, this long
  for each step after i-dgtl accepted it.
- SMS to a number ending in 0000 (e.g. +7 999 000-00-00) end "undelivered"; a number that is not a
  phone number fails without reaching i-dgtl.
"""

import importlib.util
import os
import signal
import threading
import time

import requests
from django.conf import settings
from django.db import close_old_connections, transaction
from django.utils import timezone

from common.public_urls import public_url
from common.sandbox import (  # noqa: F401  (the sandbox's facts, read here and by tests as sandbox.*)
    DEFAULTS,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_MEMBER_ID,
    SANDBOX_MESSAGES_KEY,
    SANDBOX_PORTAL_DOMAIN,
    SANDBOX_SENDER_NAMES_KEY,
    UNDELIVERABLE_EXAMPLE,
    bitrix24_url,
    idgtl_url,
    option,
)
from idgtl.models import IdgtlAccount
from idgtl.services import account_sync_default
from providers.models import BitrixApplication, Installation, InstallationState, Provider
from sendernames.models import SenderNameApplication


def _real_keys_saved() -> bool:
    """An operator saved i-dgtl keys on the default account (outside the sandbox), or added a real application."""
    try:
        account = IdgtlAccount.objects.filter(is_default=True).first()
        if (
            account
            and (account.sender_names_key or account.messages_key)
            and not account.api_url.startswith("http://127.0.0.1:")
        ):
            return True
        return BitrixApplication.objects.exclude(client_id=SANDBOX_CLIENT_ID).exists()
    except Exception:  # no tables yet: nothing is configured
        return False


def sandbox_decision(environ=None) -> tuple[bool, str]:
    """Whether `make run` starts the sandbox, and why (printed at start)."""
    environ = os.environ if environ is None else environ
    module = environ.get("DJANGO_SETTINGS_MODULE", "") or getattr(settings, "SETTINGS_MODULE", "")
    if module.endswith("production"):
        return False, "production settings never run the sandbox"
    forced = environ.get("B24SMS_SANDBOX", "").strip().lower()
    if forced in ("0", "false", "no", "off"):
        return False, "B24SMS_SANDBOX=0"
    if forced in ("1", "true", "yes", "on"):
        return True, "B24SMS_SANDBOX=1"
    configured = [
        name
        for name in ("IDGTL_SENDER_NAMES_TOKEN", "IDGTL_MESSAGES_TOKEN", "B24_CLIENT_ID")
        if getattr(settings, name, "")
    ]
    if configured:
        return False, f"{', '.join(configured)} set"
    if _real_keys_saved():
        return False, "i-dgtl keys or a Bitrix24 application are saved in the admin"
    return True, "no i-dgtl key and no Bitrix24 application configured"


def fakes_missing() -> list[str]:
    return [name for name in ("fakes.idgtl", "fakes.bitrix24") if importlib.util.find_spec(name) is None]


def sandbox_environment(port: int, environ=None) -> dict:
    """What every process of a sandbox `make run` gets in its environment."""
    environ = os.environ if environ is None else environ
    public = f"http://127.0.0.1:{port}"
    env = {
        "B24SMS_SANDBOX": "1",
        "IDGTL_API_URL": idgtl_url(environ),
        "IDGTL_SENDER_NAMES_TOKEN": SANDBOX_SENDER_NAMES_KEY,
        "IDGTL_MESSAGES_TOKEN": SANDBOX_MESSAGES_KEY,
        "B24_CLIENT_ID": SANDBOX_CLIENT_ID,
        "B24_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
        "B24_OAUTH_URL": bitrix24_url(environ) + "/oauth/token/",
        "PUBLIC_BASE_URL": public,
        # Follow sender-name reviews closely: the fake decides within seconds.
        "SENDER_NAME_SYNC_INTERVAL": environ.get("SENDER_NAME_SYNC_INTERVAL") or "5",
    }
    for name in DEFAULTS:
        env[name] = option(name, environ)
    return env


def sandbox_prepare():
    """Point the default i-dgtl account at the fake i-dgtl and make the sandbox application the default.

    Runs in run_backoffice before the processes start, with the sandbox environment applied to settings.
    """
    with transaction.atomic():
        account_sync_default()  # settings.IDGTL_* are the fake's here
        BitrixApplication.objects.filter(is_default=True).exclude(client_id=SANDBOX_CLIENT_ID).update(is_default=False)
        application, _ = BitrixApplication.objects.update_or_create(
            client_id=SANDBOX_CLIENT_ID,
            defaults={"name": "Sandbox", "client_secret": SANDBOX_CLIENT_SECRET, "is_default": True},
        )
    return application


def sandbox_leave() -> int:
    """Real configuration now: nothing may call the (stopped) fakes any more.

    The sandbox application stops being the default and its installations are marked removed
    (their history stays). Returns how many installations were retired.
    """
    with transaction.atomic():
        BitrixApplication.objects.filter(client_id=SANDBOX_CLIENT_ID, is_default=True).update(is_default=False)
        installations = list(
            Installation.objects.select_for_update()
            .filter(application__client_id=SANDBOX_CLIENT_ID)
            .exclude(state=InstallationState.REMOVED)
        )
        for installation in installations:
            installation.mark_removed(timezone.now())
    return len(installations)


# --- The fake processes (manage.py sandbox_fake idgtl|bitrix24) -----------------------------------
def allow_known_sender_names(fake):
    """The fake forgets everything when it restarts: names b24sms knows as approved (or typed in
    for a provider) stay usable for sending."""
    close_old_connections()
    names = set(SenderNameApplication.objects.filter(status="APPROVED").values_list("sender_name", flat=True))
    names |= set(Provider.objects.values_list("sender_name", flat=True))
    with fake.lock:
        fake.allowed_sender_names.update(n for n in names if n)
    close_old_connections()


def _wait_forever(stop_callbacks, out, every: float = 1.0, tick=None):
    """Serve until SIGTERM/SIGINT (honcho sends SIGTERM to every process on Ctrl-C)."""
    stopped = threading.Event()

    def stop(signum, frame):
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        if tick is not None:
            try:
                tick()
            except Exception as exc:  # the database may be busy or not migrated yet
                out(f"(sandbox) {type(exc).__name__}: {exc}")
        if stopped.wait(every):
            break
    for callback in stop_callbacks:
        callback()
    out("stopped")


def serve_fake_idgtl(out=print):
    from fakes.idgtl import FakeIdgtl  # here: the production image leaves the fakes out (.dockerignore)

    fake = FakeIdgtl(
        host="127.0.0.1",
        port=int(option("B24SMS_SANDBOX_IDGTL_PORT")),
        sender_names_key=SANDBOX_SENDER_NAMES_KEY,
        messages_key=SANDBOX_MESSAGES_KEY,
        auto_review_after=float(option("B24SMS_SANDBOX_REVIEW_DELAY")),
        auto_review_status=option("B24SMS_SANDBOX_REVIEW_STATUS"),
        auto_deliver_after=float(option("B24SMS_SANDBOX_DELIVERY_DELAY")),
    )
    fake.max_recorded_requests = 1000  # a long-running sandbox keeps only the latest requests
    fake.start()
    review = float(option("B24SMS_SANDBOX_REVIEW_DELAY"))
    out(
        f"fake i-dgtl at {fake.url}: sender names go PRE_REVIEW -> REVIEW -> {option('B24SMS_SANDBOX_REVIEW_STATUS')} "
        f"{review:g} s apart; SMS go sending -> sent -> delivered {option('B24SMS_SANDBOX_DELIVERY_DELAY')} s apart, "
        f"except to numbers ending in 0000 such as {UNDELIVERABLE_EXAMPLE} (undelivered)"
    )
    _wait_forever([fake.stop], out, every=5.0, tick=lambda: allow_known_sender_names(fake))


def wait_for_web(base_url: str, timeout: float = 180.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(base_url + "/healthz?check=database", timeout=2).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.5)
    return False


def serve_fake_bitrix24(out=print):
    from fakes.bitrix24 import FakeBitrix24  # here: the production image leaves the fakes out (.dockerignore)

    fake = FakeBitrix24(host="127.0.0.1", port=int(option("B24SMS_SANDBOX_BITRIX24_PORT"))).start()
    portal = fake.add_portal(
        domain=SANDBOX_PORTAL_DOMAIN,
        member_id=SANDBOX_MEMBER_ID,
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
        port=int(option("B24SMS_SANDBOX_PORTAL_PORT")),
    )
    out(
        f"fake Bitrix24 at {fake.url} (OAuth {fake.oauth_url}); portal {portal.domain} at {portal.client_endpoint}; "
        f"its state: {fake.url}/__fake__/portals/{portal.member_id}"
    )
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    if wait_for_web(base):
        install_portal(fake, portal, out)
    else:
        out(f"b24sms did not answer at {base}: the sandbox portal is not installed")
    _wait_forever([fake.stop], out)


def install_portal(fake, portal, out=print):
    """Install b24sms on the fake portal through our install endpoint, as a portal administrator would.

    The fake keeps its state in memory: after a restart the portal is new to it. Our install
    endpoint treats the same member_id as a reinstall and registers the providers again.
    """
    response = fake.install(portal, public_url("b24-install-default"))
    if response.status_code >= 400:
        out(
            f"installing on the sandbox portal failed: HTTP {response.status_code} "
            f"{' '.join(response.text[:300].split())}"
        )
        return False
    out(f"b24sms installed on the sandbox portal {portal.domain} (its providers are registered again by the reinstall)")
    return True
