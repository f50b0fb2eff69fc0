"""Which models django-auditlog follows, and which of their fields.

Only the fields an operator sets (each model's admin form and API serializer) are listed: an entry
then says what an operator changed, and the bookkeeping b24sms writes by itself (tokens refreshed,
statuses polled, timestamps) neither floods the trail nor puts a token in it. A field added to a model
later is not followed until it is listed here. Secrets are followed as "changed" only: their values
show as ``••••`` (set) or empty (not set), never as they are.
"""

from auditlog.registry import auditlog
from django.apps import apps

SECRET_MASK = "audit.registry.secret_mask"

TRACKED = {
    "idgtl.IdgtlAccount": {
        "include_fields": [
            "name",
            "api_url",
            "sender_names_key",
            "messages_key",
            "is_default",
            "low_balance_threshold",
        ],
        "mask_fields": ["sender_names_key", "messages_key"],
    },
    "providers.BitrixApplication": {
        "include_fields": ["name", "client_id", "client_secret", "is_default"],
        "mask_fields": ["client_secret"],
    },
    # Created by Bitrix24 installing the application (no actor); an operator sets only how it sends and its
    # quotas (admin form and PATCH /api/portals/{id}/).
    "providers.Installation": {
        "include_fields": [
            "domain",
            "account",
            "default_region",
            "rate_limit_burst",
            "rate_limit_drain_per_second",
            "quota_monthly_parts",
            "quota_recipient_per_hour",
            "quota_warning_percent",
        ],
    },
    "providers.Provider": {
        "include_fields": [
            "code",
            "name",
            "name_translations",
            "description",
            "description_translations",
            "sender_name",
            "sender_name_application",
        ],
    },
    "sendernames.SenderNameApplication": {
        "include_fields": [
            "account",
            "channel_type",
            "common_type",
            "brand",
            "date_from",
            "sender_name",
            "counteragent_name",
            "counteragent_inn",
        ],
    },
    "sendernames.SenderNameGroup": {
        "include_fields": [
            "account",
            "channel_type",
            "common_type",
            "date_from",
            "sender_name",
            "counteragent_name",
            "counteragent_inn",
        ],
    },
    "providers.Tariff": {  # prices: what a portal is billed
        "include_fields": ["installation", "price_per_part", "billable_states", "valid_from", "valid_until", "comment"],
    },
    # Who may do what: users (never the password hash, nor last_login written at every login) and groups.
    "auth.User": {
        "include_fields": ["username", "first_name", "last_name", "email", "is_active", "is_staff", "is_superuser"],
        "m2m_fields": ["groups", "user_permissions"],
    },
    "auth.Group": {"include_fields": ["name"], "m2m_fields": ["permissions"]},
}


def secret_mask(value: str) -> str:
    """A secret's value in the trail: that one is set, never any of its characters. auditlog writes a value
    that did not exist yet (an entry of creation) as "None"."""
    return "••••" if value and value != "None" else ""


def register_tracked_models():
    for label, options in TRACKED.items():
        model = apps.get_model(label)
        if not auditlog.contains(model):
            auditlog.register(model, mask_callable=SECRET_MASK if options.get("mask_fields") else None, **options)
