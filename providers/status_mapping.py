"""The one place where statuses meet: i-dgtl status -> our MessageState -> Bitrix24 status.

Decisions (see docs/contracts/idgtl.md §3.2 and docs/contracts/bitrix24.md §2.5):
- Bitrix24 marks a message ``sent`` itself as soon as it has queued the HANDLER call, and it has no
  ordering guard. Reporting ``queued`` afterwards would move it back, and reporting ``sent`` changes
  nothing there: only final statuses are reported (``delivered``, ``undelivered``, ``failed``), one
  status update per message, which is what the portal's rate limit has room for (issue 8 item 6).
  Our timeline still records every i-dgtl status.
- i-dgtl ``sending`` (queued at i-dgtl) and ``sent`` both mean "accepted, no final status yet": SENT.
- i-dgtl ``undelivered`` (lifetime ran out) -> UNDELIVERED -> Bitrix24 ``undelivered``, which
  Bitrix24 has as a status of its own; ``unsent`` (not sent, or stopped) -> FAILED -> ``failed``.
- Bitrix24 statuses are ranked so a lower one is never reported after a higher one.
"""

from idgtl.contract import MessageStatus as IdgtlStatus
from providers.models import MessageState


class Bitrix24Status:
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"


IDGTL_TO_STATE = {
    IdgtlStatus.SENDING: MessageState.SENT,
    IdgtlStatus.SENT: MessageState.SENT,
    IdgtlStatus.DELIVERED: MessageState.DELIVERED,
    IdgtlStatus.UNDELIVERED: MessageState.UNDELIVERED,
    IdgtlStatus.UNSENT: MessageState.FAILED,
}

STATE_TO_BITRIX24 = {
    MessageState.RECEIVED: None,
    MessageState.SENDING: None,
    MessageState.SENT: None,  # Bitrix24 already shows it as sent
    MessageState.DELIVERED: Bitrix24Status.DELIVERED,
    MessageState.UNDELIVERED: Bitrix24Status.UNDELIVERED,
    MessageState.FAILED: Bitrix24Status.FAILED,
}

# Pipeline order of our states: a message only moves forward (finals share the top rank).
STATE_RANK = {
    MessageState.RECEIVED: 0,
    MessageState.SENDING: 1,
    MessageState.SENT: 2,
    MessageState.DELIVERED: 3,
    MessageState.UNDELIVERED: 3,
    MessageState.FAILED: 3,
}

BITRIX24_RANK = {
    Bitrix24Status.QUEUED: 0,
    Bitrix24Status.SENT: 1,
    Bitrix24Status.DELIVERED: 2,
    Bitrix24Status.UNDELIVERED: 2,
    Bitrix24Status.FAILED: 2,
}


# Within our SENT state i-dgtl still moves from ``sending`` (queued there) to ``sent`` (handed to the operator).
IDGTL_SENT_ORDER = {IdgtlStatus.SENDING: 0, IdgtlStatus.SENT: 1}


def idgtl_status_moves_forward(current: str, new: str) -> bool:
    """Whether i-dgtl status ``new`` is news after ``current`` when both map to the same state of ours."""
    return IDGTL_SENT_ORDER.get(new, 0) > IDGTL_SENT_ORDER.get(current, -1) if current else True


def state_for_idgtl_status(status: str) -> MessageState | None:
    """Our state for an i-dgtl message status; None for a status we do not know (it is ignored)."""
    return IDGTL_TO_STATE.get(status)


def bitrix24_status_for_state(state: str) -> str | None:
    """What Bitrix24 is told when a message reaches ``state`` (None: nothing to report)."""
    return STATE_TO_BITRIX24.get(state)


def state_moves_forward(current: str, new: str) -> bool:
    """Whether ``current -> new`` is progress (a final state never changes, nothing goes back)."""
    return STATE_RANK[new] > STATE_RANK[current]
