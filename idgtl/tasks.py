"""Celery tasks of i-dgtl accounts (thin: each calls one service)."""

import logging

from celery import shared_task

from idgtl import balance

logger = logging.getLogger(__name__)


@shared_task(name="idgtl.tasks.poll_balances")
def poll_balances():
    """Beat, every minute: read the balance of the accounts due (IDGTL_BALANCE_POLL_INTERVAL); alert on a crossing.

    Each account's failure is recorded on it and logged by the service; even a database that is away
    is only logged here (the next run, a minute later, tries again): the task itself never fails.
    """
    try:
        return balance.balances_poll()
    except Exception:
        logger.exception("polling the i-dgtl balances failed")
        return {}
