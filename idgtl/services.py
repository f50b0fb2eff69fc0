"""Services for i-dgtl accounts."""
from django.conf import settings
from django.db import transaction

from .models import IdgtlAccount

DEFAULT_ACCOUNT_NAME = "default"


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


def account_get_default() -> IdgtlAccount:
    """The account an application or installation uses when none is chosen."""
    account = IdgtlAccount.objects.filter(is_default=True).first()
    return account or account_sync_default()


def ensure_default_account_after_migrate(**kwargs):
    account_sync_default()
