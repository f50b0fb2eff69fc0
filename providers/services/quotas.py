"""Quotas per installation: a monthly SMS-parts limit and a per-recipient limit (messages to one number
within a rolling hour), both optional, checked when messages are claimed for sending.

**Race-free.** :func:`quotas_apply` runs inside the claim's transaction (``sending._claim``), before the
claimed messages move to SENDING. Per installation with a quota it first takes a transaction-level
PostgreSQL advisory lock (in installation id order, like the callback inbox lock), then reads what was
spent: a second worker claiming messages of the same portal waits for the first one's commit and then
sees its SENDING messages in the rollups and in the messages table. Two workers therefore cannot both
spend the last part. On SQLite every write transaction already holds the database lock from its start.

**What counts.** The month: parts of the portal's messages received this USAGE_TIME_ZONE month that are
sending, sent, delivered or undelivered, read from the usage rollups (UsageDay, never the messages
table), plus the parts of the messages being claimed, in id order. The recipient: messages of the
portal to the same destination claimed (``sending_started_at``) within the last hour and not failed
(the partial index providers_msg_recipient_idx). A message refused by the per-recipient limit does not
spend monthly parts. A refused message ends FAILED with the reason as its error (Bitrix24 gets
``failed``), is counted in ``b24sms_quota_refusals_total{reason}``, and puts its portal under "Needs
attention" on the start page for a day.
"""

from collections import defaultdict
from datetime import timedelta

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, Sum
from django.utils.translation import gettext as _

from common import metrics
from providers.models import Message, MessageState, UsageDay
from providers.services.usage import usage_day_of, usage_today

QUOTA_LOCK_NAMESPACE = 0x62323471  # first key of the PostgreSQL advisory lock on an installation's quotas
SPENDING_STATES = (MessageState.SENDING, MessageState.SENT, MessageState.DELIVERED, MessageState.UNDELIVERED)
RECIPIENT_WINDOW = timedelta(hours=1)
REFUSED_CACHE_KEY = "providers:quota-refused:%s"
REFUSED_SHOWN_FOR = 24 * 3600  # s: how long a refusal keeps the portal under "Needs attention"

REASON_MONTHLY_PARTS = "monthly_parts"
REASON_RECIPIENT_HOUR = "recipient_per_hour"


def _has_quota(installation) -> bool:
    return installation.quota_monthly_parts is not None or installation.quota_recipient_per_hour is not None


def _lock(installation_ids) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite: the transaction holds the database's write lock (transaction_mode IMMEDIATE)
    with connection.cursor() as cursor:
        for installation_id in sorted(set(installation_ids)):
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [QUOTA_LOCK_NAMESPACE, installation_id % 2**31])


def month_parts_used(*, installation_id: int, today=None) -> int:
    """Parts of the portal's messages received this month (USAGE_TIME_ZONE) that i-dgtl has or may have."""
    first = (today or usage_today()).replace(day=1)
    total = UsageDay.objects.filter(
        installation_id=installation_id, day__gte=first, state__in=SPENDING_STATES
    ).aggregate(total=Sum("parts"))["total"]
    return int(total or 0)


def months_parts_used(installation_ids, today=None) -> dict[int, int]:
    """{installation id: parts used this month} in one aggregate query (the start page)."""
    first = (today or usage_today()).replace(day=1)
    rows = (
        UsageDay.objects.filter(installation_id__in=list(installation_ids), day__gte=first, state__in=SPENDING_STATES)
        .order_by()
        .values_list("installation_id")
        .annotate(total=Sum("parts"))
    )
    return {installation_id: int(total or 0) for installation_id, total in rows}


def _recipient_counts(installation_id: int, destinations, now) -> dict[str, int]:
    rows = (
        Message.objects.filter(
            installation_id=installation_id,
            destination__in=list(destinations),
            sending_started_at__isnull=False,
            sending_started_at__gt=now - RECIPIENT_WINDOW,
            state__in=SPENDING_STATES,
        )
        .order_by()
        .values_list("destination")
        .annotate(n=Count("id"))
    )
    return dict(rows)


def quotas_apply(*, messages: list[Message], now) -> list[Message]:
    """The messages (about to be claimed, with ``.installation`` and ``.destination`` set) that are over a
    quota, each with its ``error_message`` set to the reason. Must run inside the claim's transaction."""
    by_installation = defaultdict(list)
    for message in messages:
        if _has_quota(message.installation):
            by_installation[message.installation_id].append(message)
    if not by_installation:
        return []
    _lock(by_installation)
    refused, reasons = [], defaultdict(int)
    for installation_id in sorted(by_installation):
        group = sorted(by_installation[installation_id], key=lambda m: m.pk)
        installation = group[0].installation
        allowed = group
        per_hour = installation.quota_recipient_per_hour
        if per_hour is not None:
            counts = _recipient_counts(installation_id, {m.destination for m in group}, now)
            allowed = []
            for message in group:
                if counts.get(message.destination, 0) >= per_hour:
                    message.error_message = _(
                        "Not sent: the per-recipient limit of this portal is reached (%(limit)s messages to "
                        "%(number)s per hour)."
                    ) % {"limit": per_hour, "number": message.destination}
                    refused.append(message)
                    reasons[REASON_RECIPIENT_HOUR] += 1
                else:
                    counts[message.destination] = counts.get(message.destination, 0) + 1
                    allowed.append(message)
        limit = installation.quota_monthly_parts
        if limit is not None and allowed:
            used = month_parts_used(installation_id=installation_id, today=usage_day_of(now))
            for message in allowed:
                if used + message.parts > limit:
                    message.error_message = _(
                        "Not sent: the monthly SMS parts limit of this portal is reached (%(used)s of %(limit)s "
                        "parts used; this message needs %(parts)s)."
                    ) % {"used": used, "limit": limit, "parts": message.parts}
                    refused.append(message)
                    reasons[REASON_MONTHLY_PARTS] += 1
                else:
                    used += message.parts
    if refused:
        refused_installations = {m.installation_id: m.error_message for m in refused}
        at = now.isoformat()

        def after_commit():
            for reason, count in reasons.items():
                metrics.record_quota_refusal(reason, count)
            cache.set_many(
                {REFUSED_CACHE_KEY % i: {"at": at, "error": error} for i, error in refused_installations.items()},
                timeout=REFUSED_SHOWN_FOR,
            )

        transaction.on_commit(after_commit, robust=True)
    return refused


def quota_refusals_recent(installation_ids) -> dict[int, dict]:
    """{installation id: {"at", "error"}} of portals that had a message refused by a quota in the last day."""
    keys = {REFUSED_CACHE_KEY % i: i for i in installation_ids}
    if not keys:
        return {}
    return {keys[key]: value for key, value in cache.get_many(list(keys)).items()}
