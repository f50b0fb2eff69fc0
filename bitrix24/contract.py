"""Everything b24sms knows or assumes about the Bitrix24 REST API, in one place.

Source: docs/contracts/bitrix24.md (section numbers below). Tags as in the contract: [D] docs,
[S] server source mirror, [SDK] official SDKs, [A] our assumption. When Bitrix24 turns out to
behave otherwise, change it here and nowhere else. The client (bitrix24/client.py) and the fake
(fakes/bitrix24.py) both read these values.
"""

import enum
import re

from django.db import models
from django.utils.translation import gettext_lazy as _

# --- Calling the API (§1.1) ---------------------------------------------------------------------
DEFAULT_OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"  # [D] §4.3 (can be regional; setting B24_OAUTH_URL)
REST_PATH = "/rest/"  # [D] client_endpoint = https://{portal}/rest/
AUTH_PARAM = "auth"  # [D] token parameter; [S] also "access_token" and "Authorization: Bearer"
CLOUD_REQUEST_TIMEOUT = 60  # [D] seconds the cloud spends on one request
MAX_REDIRECTS = 3  # [A] portal renames followed in one call (302 -> re-POST to Location)
LIST_PAGE_SIZE = 50  # [D] §1.2 list methods: "next" / start=<next>

# --- Methods (§2, §2.7, §5) ---------------------------------------------------------------------
METHOD_SENDER_ADD = "messageservice.sender.add"
METHOD_SENDER_UPDATE = "messageservice.sender.update"  # [D] since 2026-04; older portals: ERROR_METHOD_NOT_FOUND (§2.2)
METHOD_SENDER_LIST = "messageservice.sender.list"
METHOD_SENDER_DELETE = "messageservice.sender.delete"
METHOD_MESSAGE_STATUS_UPDATE = "messageservice.message.status.update"
METHOD_APP_INFO = "app.info"
METHOD_EVENT_BIND = "event.bind"
METHOD_EVENT_GET = "event.get"
METHOD_BATCH = "batch"
MESSAGESERVICE_METHODS = {
    METHOD_SENDER_ADD,
    METHOD_SENDER_UPDATE,
    METHOD_SENDER_LIST,
    METHOD_SENDER_DELETE,
    METHOD_MESSAGE_STATUS_UPDATE,
}  # [D] app context only (never webhooks)
SCOPE_MESSAGESERVICE = "messageservice"
EVENT_ONAPPINSTALL = "ONAPPINSTALL"
EVENT_ONAPPUNINSTALL = "ONAPPUNINSTALL"
# [S] §4.6: an application update deletes every provider (sender) of the application on the portal,
# then ONAPPUPDATE is sent to the application's bound handlers.
EVENT_ONAPPUPDATE = "ONAPPUPDATE"

# --- Batch (§5) ---------------------------------------------------------------------------------
BATCH_MAX_COMMANDS = 50  # [D] more -> ERROR_BATCH_LENGTH_EXCEEDED

# --- Provider fields (§2.1, §2.6) ---------------------------------------------------------------
CODE_PATTERN = r"^[a-zA-Z0-9._-]+$"  # [D]
CODE_RE = re.compile(CODE_PATTERN)
CODE_MAX_LENGTH = 128  # [S] DB column
SENDER_TYPE_SMS = "SMS"  # [D] the only TYPE, exact and case-sensitive
TYPE_MAX_LENGTH = 30  # [S]
HANDLER_MAX_LENGTH = 1000  # [S]
NAME_MAX_LENGTH = 500  # [S] per language
DESCRIPTION_MAX_LENGTH = 1000  # [S] per language
MESSAGE_TO_MAX_LENGTH = 50  # [S]
MESSAGE_ID_MAX_LENGTH = 128  # [S] (32-char md5 hex in practice)
HANDLER_SCHEMES = ("http", "https")  # [S] others -> ERROR_UNSUPPORTED_PROTOCOL


def code_is_valid(code: str) -> bool:
    return bool(code) and len(code) <= CODE_MAX_LENGTH and bool(CODE_RE.match(code))


# --- Message statuses for messageservice.message.status.update (§2.5) -----------------------------
class MessageStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")  # [S] 11
    SENT = "sent", _("Sent")  # [S] 13 (Bitrix sets it itself once the HANDLER call is queued)
    DELIVERED = "delivered", _("Delivered")  # [S] 14
    UNDELIVERED = "undelivered", _("Undelivered")  # [S] 15
    FAILED = "failed", _("Failed")  # [S] 16


MESSAGE_STATUSES = frozenset(MessageStatus.values)

# --- Limits (§1.4) -------------------------------------------------------------------------------
RATE_LIMIT_BURST = 50  # [D] standard plans: X
RATE_LIMIT_DRAIN_PER_SECOND = 2.0  # [D] standard plans: Y
ENTERPRISE_RATE_LIMIT_BURST = 250  # [D]
ENTERPRISE_RATE_LIMIT_DRAIN_PER_SECOND = 5.0  # [D]
OPERATING_WINDOW_SECONDS = 600  # [D] 10 one-minute buckets
OPERATING_LIMIT_SECONDS = 480  # [D] docs example; cloud value is configuration-defined
# [A] When OPERATION_TIME_LIMIT arrives without operating_reset_at, pause the method this long
# (the oldest one-minute bucket drops out within a minute).
OPERATION_TIME_LIMIT_DEFAULT_PAUSE = 60

# --- OAuth (§4.3, §4.4) --------------------------------------------------------------------------
GRANT_REFRESH_TOKEN = "refresh_token"
ACCESS_TOKEN_LIFETIME = 3600  # [D] expires_in
REFRESH_TOKEN_LIFETIME_DAYS = 180  # [D] (older docs: 28); invalid_grant can come at any time


# --- Error codes (§1.3, §2, §4.3) ---------------------------------------------------------------
class ErrorKind(enum.Enum):
    """What an error code means for the caller; the client maps each kind to an exception class."""

    REFRESH = "refresh"  # refresh the access token once, then retry the call
    AUTH = "auth"  # authentication failed (permanent for this token)
    NEEDS_REINSTALL = "needs_reinstall"  # the app is gone from the portal / refresh token dead
    ACCESS_DENIED = "access_denied"  # rights or scope missing
    METHOD = "method"  # method-specific, permanent
    QUERY_LIMIT = "query_limit"  # leaky bucket overflow: back off and retry
    TRANSIENT = "transient"  # server trouble: retry with backoff
    NO_RETRY_TRANSIENT = "no_retry_transient"  # temporary, but hammering makes it worse
    OPERATION_TIME_LIMIT = "operation_time_limit"  # pause this method until operating_reset_at


# Codes are compared lower-cased (OAuth codes are lower-case, REST codes upper-case).
EXPIRED_TOKEN = "expired_token"
INVALID_TOKEN = "invalid_token"
INVALID_GRANT = "invalid_grant"
QUERY_LIMIT_EXCEEDED = "QUERY_LIMIT_EXCEEDED"
OPERATION_TIME_LIMIT = "OPERATION_TIME_LIMIT"
ACCESS_DENIED = "ACCESS_DENIED"
INSUFFICIENT_SCOPE = "insufficient_scope"
NO_AUTH_FOUND = "NO_AUTH_FOUND"
ERROR_METHOD_NOT_FOUND = "ERROR_METHOD_NOT_FOUND"
ERROR_BATCH_LENGTH_EXCEEDED = "ERROR_BATCH_LENGTH_EXCEEDED"
ERROR_BATCH_METHOD_NOT_ALLOWED = "ERROR_BATCH_METHOD_NOT_ALLOWED"
INVALID_REQUEST = "INVALID_REQUEST"

ERROR_KINDS: dict[str, ErrorKind] = {
    "expired_token": ErrorKind.REFRESH,  # [D] 401
    "invalid_token": ErrorKind.REFRESH,  # [SDK] 401; a failed refresh makes it AUTH
    "no_auth_found": ErrorKind.AUTH,  # [D] 401 "Wrong authorization data"
    "authorization_error": ErrorKind.AUTH,  # [S] 401
    "invalid_client": ErrorKind.AUTH,  # [D] OAuth: bad client_id/secret or app not installed
    "invalid_request": ErrorKind.METHOD,  # [D] 400 "Https required" / OAuth malformed request
    "application_not_found": ErrorKind.NEEDS_REINSTALL,  # [S] 401 app not installed
    "portal_deleted": ErrorKind.NEEDS_REINSTALL,  # [D] 500 portal closed
    "invalid_grant": ErrorKind.NEEDS_REINSTALL,  # [D] OAuth: refresh token expired/revoked
    "access_denied": ErrorKind.ACCESS_DENIED,  # [D] 403
    "insufficient_scope": ErrorKind.ACCESS_DENIED,  # [D] 403 ([S] may be 401)
    "invalid_scope": ErrorKind.ACCESS_DENIED,  # [D] OAuth
    "invalid_credentials": ErrorKind.ACCESS_DENIED,  # [D] 403
    "user_access_error": ErrorKind.ACCESS_DENIED,  # [D] 403
    "payment_required": ErrorKind.ACCESS_DENIED,  # [D] OAuth "Payment required"
    "error_method_not_found": ErrorKind.METHOD,  # [D] 404
    "error_batch_length_exceeded": ErrorKind.METHOD,  # [D] 400
    "error_batch_method_not_allowed": ErrorKind.METHOD,  # [D] 405
    "query_limit_exceeded": ErrorKind.QUERY_LIMIT,  # [D] 503
    "operation_time_limit": ErrorKind.OPERATION_TIME_LIMIT,  # [D] 429
    "overload_limit": ErrorKind.NO_RETRY_TRANSIENT,  # [D] 503 portal blocked: do not hammer
    "internal_server_error": ErrorKind.TRANSIENT,  # [D] 500
    "error_unexpected_answer": ErrorKind.TRANSIENT,  # [D] 500
}


def error_kind(code: str | None, http_status: int | None) -> ErrorKind:
    """The kind of an error envelope: by its code (case-insensitive), else by HTTP status."""
    kind = ERROR_KINDS.get((code or "").lower())
    if kind is not None:
        return kind
    if http_status is not None and http_status >= 500:
        return ErrorKind.TRANSIENT
    if http_status == 429:
        return ErrorKind.QUERY_LIMIT
    return ErrorKind.METHOD  # ERROR_SENDER_*, ERROR_MESSAGE_*, ERROR_CORE, ERROR_ARGUMENT, ... (400)


# Method-specific errors and their exact descriptions (§2.1–§2.5). The fake answers with these.
class MethodErrors:
    SENDER_VALIDATION_FAILURE = "ERROR_SENDER_VALIDATION_FAILURE"
    WRONG_HANDLER_URL = "ERROR_WRONG_HANDLER_URL"
    UNSUPPORTED_PROTOCOL = "ERROR_UNSUPPORTED_PROTOCOL"
    SENDER_ALREADY_INSTALLED = "ERROR_SENDER_ALREADY_INSTALLED"
    SENDER_ADD_FAILURE = "ERROR_SENDER_ADD_FAILURE"
    SENDER_CODE_REQUIRED = "ERROR_SENDER_CODE_REQUIRED"
    SENDER_OTHER_PARAMS_REQUIRED = "ERROR_SENDER_OTHER_PARAMS_REQUIRED"
    SENDER_NOT_FOUND = "ERROR_SENDER_NOT_FOUND"
    SENDER_UPDATE_FAILURE = "ERROR_SENDER_UPDATE_FAILURE"
    MESSAGE_NOT_FOUND = "ERROR_MESSAGE_NOT_FOUND"
    MESSAGE_STATUS_INCORRECT = "ERROR_MESSAGE_STATUS_INCORRECT"
    EVENT_NOT_FOUND = "ERROR_EVENT_NOT_FOUND"


class Descriptions:
    EMPTY_DATA = "Empty data!"
    EMPTY_CODE = "Empty sender code!"
    WRONG_CODE = "Wrong sender code!"
    WRONG_HANDLER_URL = "Wrong handler URL"
    UNSUPPORTED_PROTOCOL = "Unsupported handler protocol"
    EMPTY_NAME = "Empty sender NAME!"
    EMPTY_TYPE = "Empty sender message TYPE!"
    UNKNOWN_TYPE = "Unknown sender message TYPE!"
    ALREADY_INSTALLED = "Sender already installed!"
    ADD_FAILURE = "Sender save error!"
    CODE_REQUIRED = "CODE is required!"
    OTHER_PARAMS_REQUIRED = "At least one other parameter is required!"
    SENDER_NOT_FOUND = "Sender not found!"
    UPDATE_FAILURE = "Sender update error!"
    MESSAGE_NOT_FOUND = "Message not found!"
    STATUS_INCORRECT = "Message status incorrect!"
    ACCESS_DENIED = "Access denied!"
    APPLICATION_CONTEXT_REQUIRED = "Application context required"
    EXPIRED_TOKEN = "The access token provided has expired"
    INVALID_TOKEN = "The access token provided is invalid"
    NO_AUTH_FOUND = "Wrong authorization data"
    INSUFFICIENT_SCOPE = "The request requires higher privileges than provided by the access token"
    METHOD_NOT_FOUND = "Method not found!"
    QUERY_LIMIT = "Too many requests"
    OPERATION_TIME_LIMIT = "Method is blocked due to operation time limit."
    BATCH_LENGTH_EXCEEDED = "Max batch length exceeded"
    BATCH_METHOD_NOT_ALLOWED = "Method is not allowed for batch usage"
    EVENT_NOT_FOUND = "Event not found"
    INVALID_GRANT = "Invalid grant"
    INVALID_CLIENT = "Invalid client"
