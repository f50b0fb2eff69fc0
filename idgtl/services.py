"""Services for i-dgtl accounts."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext_lazy as _

from idgtl.models import IdgtlAccount

DEFAULT_ACCOUNT_NAME = "default"
KEY_FIELDS = ("sender_names_key", "messages_key")


@transaction.atomic
def account_sync_default() -> IdgtlAccount:
    """Create or update the default account from settings (IDGTL_API_URL and the two keys).

    Keys left empty in the settings do not erase keys an operator saved in the admin.
    """
    account = IdgtlAccount.objects.select_for_update().filter(is_default=True).first()
    if account is None:
        account, _ = IdgtlAccount.objects.get_or_create(name=DEFAULT_ACCOUNT_NAME, defaults={"is_default": True})
        if not account.is_default:
            account.is_default = True
    account.api_url = settings.IDGTL_API_URL
    if settings.IDGTL_SENDER_NAMES_TOKEN:
        account.sender_names_key = settings.IDGTL_SENDER_NAMES_TOKEN
    if settings.IDGTL_MESSAGES_TOKEN:
        account.messages_key = settings.IDGTL_MESSAGES_TOKEN
    account.save()
    return account


def account_url_change_check(*, account: IdgtlAccount, api_url: str, entered_keys: dict[str, str]) -> None:
    """ValidationError naming each saved key not entered again when ``api_url`` is not the saved URL.

    A saved key is only ever sent to the address it was saved with: otherwise whoever may edit an
    account could point it at their own host and have "Check keys" (or a send) hand both keys over.
    ``entered_keys`` are the keys typed in this same save (blank: keep the saved one). For an
    operator's form or API call; settings (account_sync_default) are trusted as they are.
    """
    if account.pk is None:
        return
    saved = IdgtlAccount.objects.filter(pk=account.pk).values(*KEY_FIELDS, "api_url").first()
    if saved is None or (api_url or "").rstrip("/") == (saved["api_url"] or "").rstrip("/"):
        return
    missing = {
        name: _("The API URL changed: enter this key again (a saved key is never sent to another address).")
        for name in KEY_FIELDS
        if saved[name] and not (entered_keys.get(name) or "").strip()
    }
    if missing:
        raise ValidationError(missing)


def account_get_default() -> IdgtlAccount:
    """The account an application or installation uses when none is chosen."""
    account = IdgtlAccount.objects.filter(is_default=True).first()
    return account or account_sync_default()


def ensure_default_account_after_migrate(**kwargs):
    account_sync_default()
