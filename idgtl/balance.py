"""The balance of i-dgtl accounts: read by beat, kept on the account, one e-mail per low-balance crossing.

``GET /balance`` (docs/contracts/idgtl.md §3.7) takes either key. Beat runs :func:`balances_poll` every
minute; it reads the accounts with a key whose last read is ``IDGTL_BALANCE_POLL_INTERVAL`` seconds old
(0: never), so a new account is read within a minute and the interval is one setting.

The alert state lives on the account: ``low_balance_alert_sent_at`` is set by the one poll whose
conditional UPDATE finds it unset while the balance is below the threshold (two polls at once, in any
processes, send one mail), and cleared by a poll that reads the balance at or above the threshold (the
alert is re-armed). A mail that cannot be sent clears it again, so the next poll tries again.

A read that fails is recorded on the account (``balance_error``, shown in the admin and on the start page)
and logged; it never raises into the beat task.
"""

import logging
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.mail import mail_admins
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext

from idgtl.client import IdgtlClient, IdgtlError
from idgtl.models import IdgtlAccount

logger = logging.getLogger(__name__)

# A beat read, not a send: a short timeout and one retry; the next poll comes anyway.
READ_TIMEOUT = 15.0
READ_RETRIES = 1
# Beat runs every minute: an account read a few seconds less than the interval ago is due too, or every
# read would slip by a minute.
DUE_SLACK_SECONDS = 10
PREFERRED_CURRENCY = "RUB"  # [I] i-dgtl answers {"RUB": amount}
ERROR_MAX_CHARS = 500
AMOUNT_LIMIT = Decimal(10) ** 14  # what the field (16 digits, 2 decimals) holds


class Outcome:
    READ = "read"
    ALERTED = "alerted"
    ALERT_NOT_SENT = "alert_not_sent"
    REARMED = "rearmed"
    STALE = "stale"  # a newer read was stored meanwhile
    ERROR = "error"


def balance_from_answer(payload) -> tuple[Decimal, str]:
    """(amount, currency) of ``{"RUB": 1234.5}``: RUB when present, else the only currency; ValueError otherwise."""
    if not isinstance(payload, dict) or not payload:
        raise ValueError(f"i-dgtl answered an unexpected balance: {str(payload)[:100]}")
    if PREFERRED_CURRENCY in payload:
        currency = PREFERRED_CURRENCY
    elif len(payload) == 1:
        currency = next(iter(payload))
    else:
        raise ValueError(
            f"i-dgtl answered several currencies and no {PREFERRED_CURRENCY}: {', '.join(map(str, payload))[:100]}"
        )
    value = payload[currency]
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InvalidOperation
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"i-dgtl answered a balance that is not a number: {str(value)[:100]}") from None
    if not amount.is_finite() or abs(amount) >= AMOUNT_LIMIT:
        raise ValueError(f"i-dgtl answered a balance out of range: {str(value)[:100]}")
    return amount.quantize(Decimal("0.01")), str(currency)[:8]


def accounts_due(now):
    """Accounts with a key whose balance was last asked for at least IDGTL_BALANCE_POLL_INTERVAL ago."""
    interval = settings.IDGTL_BALANCE_POLL_INTERVAL
    if interval <= 0:
        return IdgtlAccount.objects.none()
    due_before = now - timedelta(seconds=max(interval - DUE_SLACK_SECONDS, 1))
    return (
        IdgtlAccount.objects.exclude(messages_key="", sender_names_key="")
        .filter(Q(balance_checked_at__isnull=True) | Q(balance_checked_at__lte=due_before))
        .order_by("pk")
    )


def balances_poll(*, now=None) -> dict[str, str]:
    """Beat: read the balance of every account due; {account name: outcome}. One account's failure,
    whatever it is, is logged and does not stop the others."""
    outcomes = {}
    for account in accounts_due(now or timezone.now()):
        try:
            outcomes[account.name] = account_balance_poll(account=account)
        except Exception:
            logger.exception(
                "reading the i-dgtl balance of account %s failed", account, extra={"account": account.name}
            )
            outcomes[account.name] = Outcome.ERROR
    return outcomes


def _client(account: IdgtlAccount) -> IdgtlClient:
    """Either key works for GET /balance: the messages key, else the sender-names key."""
    make = IdgtlClient.for_messages if account.messages_key else IdgtlClient.for_sender_names
    return make(account, timeout=READ_TIMEOUT, max_retries=READ_RETRIES)


def account_balance_poll(*, account: IdgtlAccount) -> str:
    """Read one account's balance and record it (or the error); send the alert of a crossing."""
    asked_at = timezone.now()
    try:
        with _client(account) as client:
            payload = client.get_balance()
        amount, currency = balance_from_answer(payload)
    except (IdgtlError, ValueError) as exc:
        return account_balance_error_record(account=account, error=str(exc), asked_at=asked_at)
    return account_balance_record(account=account, amount=amount, currency=currency, read_at=timezone.now())


def account_balance_error_record(*, account: IdgtlAccount, error: str, asked_at) -> str:
    """The read failed: keep the last good value, say why on the account, leave the alert state alone."""
    error = (error or "unknown error")[:ERROR_MAX_CHARS]
    IdgtlAccount.objects.filter(pk=account.pk).update(balance_error=error, balance_checked_at=asked_at)
    logger.warning("i-dgtl balance of account %s not read: %s", account, error, extra={"account": account.name})
    return Outcome.ERROR


def account_balance_record(*, account: IdgtlAccount, amount: Decimal, currency: str, read_at) -> str:
    """Store a read balance, then decide the alert with conditional UPDATEs (race-free without a lock).

    Only the read that is stored decides (a slower poll that read earlier changes nothing); below the
    threshold, the alert is sent by the poll whose UPDATE set ``low_balance_alert_sent_at``; at or above
    it (or with no threshold), a sent alert is re-armed.
    """
    rows = IdgtlAccount.objects.filter(pk=account.pk)
    stored = rows.filter(Q(balance_at__isnull=True) | Q(balance_at__lte=read_at)).update(
        balance=amount, balance_currency=currency, balance_at=read_at, balance_checked_at=read_at, balance_error=""
    )
    if not stored:
        return Outcome.STALE
    current = rows.filter(balance_at=read_at)
    if current.filter(low_balance_alert_sent_at__isnull=True, low_balance_threshold__gt=amount).update(
        low_balance_alert_sent_at=read_at
    ):
        return _alert(account=account, amount=amount, currency=currency, read_at=read_at)
    if (
        current.filter(low_balance_alert_sent_at__isnull=False)
        .exclude(low_balance_threshold__gt=amount)
        .update(low_balance_alert_sent_at=None)
    ):
        logger.info(
            "i-dgtl balance of account %s is %s %s again: the low-balance alert is re-armed",
            account,
            amount,
            currency,
            extra={"account": account.name},
        )
        return Outcome.REARMED
    return Outcome.READ


def _alert(*, account: IdgtlAccount, amount: Decimal, currency: str, read_at) -> str:
    threshold = IdgtlAccount.objects.filter(pk=account.pk).values_list("low_balance_threshold", flat=True).first()
    logger.error(
        "i-dgtl balance of account %s is %s %s, below its threshold of %s",
        account,
        amount,
        currency,
        threshold,
        extra={"account": account.name, "balance": str(amount), "threshold": str(threshold)},
    )
    context = {
        "account": account.name,
        "balance": amount,
        "currency": currency,
        "threshold": threshold,
        "time": timezone.localtime(read_at).strftime("%Y-%m-%d %H:%M %Z"),
    }
    try:
        with translation.override(settings.LANGUAGE_CODE):
            subject = gettext("Low i-dgtl balance: %(account)s has %(balance)s %(currency)s") % context
            body = (
                gettext(
                    "The balance of the i-dgtl account “%(account)s” is %(balance)s %(currency)s (read at %(time)s), "
                    "below its threshold of %(threshold)s %(currency)s.\n\nTop it up in the i-dgtl cabinet. This is "
                    "the only e-mail until the balance has been at or above the threshold again."
                )
                % context
            )
        mail_admins(subject, body)
    except Exception as exc:  # not sent: this crossing's alert is armed again, the next poll tries again
        IdgtlAccount.objects.filter(pk=account.pk, low_balance_alert_sent_at=read_at).update(
            low_balance_alert_sent_at=None
        )
        logger.error(
            "low-balance e-mail for i-dgtl account %s not sent: %s", account, exc, extra={"account": account.name}
        )
        return Outcome.ALERT_NOT_SENT
    return Outcome.ALERTED
