"""Everything b24sms knows or assumes about the i-dgtl HTTP API, in one place.

Source: docs/contracts/idgtl.md. Each value says whether it is confirmed ([C]), inferred ([I])
or our assumption ([A]). When i-dgtl says otherwise, change it here and nowhere else.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _

# --- Basics (§1) --------------------------------------------------------------------------------
DEFAULT_API_URL = "https://direct.i-dgtl.ru/api/v1"  # [C]
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # [C] ISO-8601 UTC with Z
MOSCOW_TZ = "Europe/Moscow"  # [I] dateFrom is the start of a Moscow day

# --- Paths (§2, §3) -----------------------------------------------------------------------------
SENDER_NAMES_PATH = "/sender-names"  # [C] POST create (multipart)
SENDER_NAME_PATH = "/sender-names/{id}"  # [A] GET one (§2.4)
MESSAGES_PATH = "/message"  # [C] POST send (array), GET read
MESSAGES_STOP_PATH = "/message/stop"  # [C]
BALANCE_PATH = "/balance"  # [C]
BODY_PART_NAME = "body"  # [C] multipart JSON part
FILE_PART_NAME = "file{n}"  # [C] file1, file2, ...


# --- Error codes (§1.2) -------------------------------------------------------------------------
class ErrorCode(models.IntegerChoices):
    NOT_AUTHENTICATED = 4010, "Not Authenticated"  # [C] 401, no Authorization header
    BAD_CREDENTIALS = 4012, "Bad credentials"  # [C] 401, unknown key
    ACCESS_DENIED = 4030, "Access Denied"  # [C] 403, key of the wrong type
    NOT_FOUND = 4040, "Not Found"  # [A] 404
    VALIDATION = 4220, "Validation error"  # [C] 422, message varies
    TOO_MANY_REQUESTS = 4290, "Too Many Requests"  # [A] 429


# --- Sender names (§2) ----------------------------------------------------------------------------
class ChannelType(models.TextChoices):
    SMS = "SMS", "SMS"  # [C] the only channel for names


class CommonType(models.TextChoices):  # [A] the platform's traffic types (S9); PROMO [C]
    PROMO = "PROMO", _("Promotional")
    SERVICE = "SERVICE", _("Service")
    AUTHORIZE = "AUTHORIZE", _("Authorisation")
    TRANSACT = "TRANSACT", _("Transactional")


COMMON_TYPES_REQUIRING_DOCUMENTS = {CommonType.PROMO}  # [C] PROMO needs files


class Brand(models.TextChoices):  # [A] except MTS [C]
    MTS = "MTS", _("MTS")
    MEGAFON = "MEGAFON", _("MegaFon")
    BEELINE = "BEELINE", _("Beeline")
    TELE2 = "TELE2", _("Tele2")
    MOTIV = "MOTIV", _("Motiv")
    YOTA = "YOTA", _("Yota")
    OTHER = "OTHER", _("Other operators")


# [C] regexes from S1, in their portable form [I]; [A] MegaFon's applies to MEGAFON and YOTA.
SENDER_NAME_PATTERN_MEGAFON = r"^[A-z0-9.*!\-]{3,11}$"
SENDER_NAME_PATTERN_OTHERS = r"^[A-z0-9.*+\-\s]{3,11}$"
BRANDS_WITH_MEGAFON_PATTERN = {Brand.MEGAFON, Brand.YOTA}
SENDER_NAME_MIN_LENGTH = 3
SENDER_NAME_MAX_LENGTH = 11


def sender_name_pattern(brand: str) -> str:
    return SENDER_NAME_PATTERN_MEGAFON if brand in BRANDS_WITH_MEGAFON_PATTERN else SENDER_NAME_PATTERN_OTHERS


class SenderNameStatus(models.TextChoices):
    PRE_REVIEW = "PRE_REVIEW", _("Pre-review")  # [C] right after creation
    REVIEW = "REVIEW", _("With the operator")  # [A]
    APPROVED = "APPROVED", _("Approved")  # [A]
    REJECTED = "REJECTED", _("Rejected")  # [A]
    CANCELED = "CANCELED", _("Canceled")  # [A]


# [A] Final statuses: polling stops. Any other string (known or not) keeps being polled.
SENDER_NAME_FINAL_STATUSES = {SenderNameStatus.APPROVED, SenderNameStatus.REJECTED, SenderNameStatus.CANCELED}
# [A] A duplicate is a live name: same senderName (case-insensitive), brand and channel, not in these.
SENDER_NAME_DEAD_STATUSES = {SenderNameStatus.REJECTED, SenderNameStatus.CANCELED}
# [A] How far along its review a status is. i-dgtl's record carries no status time, so a status read
# from i-dgtl replaces one an operator set by hand only when it is further along; an unknown string
# (no stage) never replaces it.
SENDER_NAME_STATUS_STAGE = {
    SenderNameStatus.PRE_REVIEW: 0,
    SenderNameStatus.REVIEW: 1,
    SenderNameStatus.APPROVED: 2,
    SenderNameStatus.REJECTED: 2,
    SenderNameStatus.CANCELED: 3,
}
# [A] §2.4 is an assumption: a read answered 405 (the route takes no GET), or 404 when the list route
# answers 404/405 too, means i-dgtl has no read endpoint for this account, not that one id is unknown.
READ_ROUTE_ABSENT_HTTP_STATUSES = (404, 405)

# [A] Document limits (§2.1): PDF, PNG, JPEG; defaults for the settings of the same meaning.
DOCUMENT_MIME_TYPES = {"application/pdf": "PDF", "image/png": "PNG", "image/jpeg": "JPEG"}


# --- Messages (§3) ----------------------------------------------------------------------------------
SEND_BATCH_MAX = 1000  # [C] 1-1000 messages per POST /message
# Length of `content`: NOT FOUND (docs/contracts/idgtl.md §3.1). [A] at most 10 SMS parts: 1530 GSM-7 characters
# or 670 UCS-2 (Cyrillic). Operators in Russia join long SMS of up to about 10 parts reliably; beyond it,
# handsets and routes split or drop them, and a runaway text would cost dozens of parts. The HANDLER refuses
# a longer text (setting MESSAGES_MAX_PARTS, default this value).
SMS_MAX_PARTS = 10
MESSAGE_CREATED_ITEM_CODE = 201  # [C] an item is sent only with code 201 and a messageUuid
GET_MESSAGES_MAX_WINDOW = 10_000  # [C] page*per_page <= 10000
MESSAGE_LIFETIME_HOURS = 25  # [C] default lifetime before "undelivered"
EXTERNAL_MESSAGE_ID_MAX_LENGTH = 100  # [I]


class MessageStatus(models.TextChoices):  # [C] S9
    SENDING = "sending", _("Waiting to be sent")
    SENT = "sent", _("Sent")
    DELIVERED = "delivered", _("Delivered")
    UNDELIVERED = "undelivered", _("Undelivered")
    UNSENT = "unsent", _("Not sent")


MESSAGE_FINAL_STATUSES = {MessageStatus.DELIVERED, MessageStatus.UNDELIVERED, MessageStatus.UNSENT}  # [C]
CALLBACK_EVENTS = ("delivered", "sent")  # events b24sms asks for (§3.4)
CALLBACK_SOURCE_IPS = ("185.203.96.7",)  # [C] S3; the allowlist itself is a setting


# --- Read endpoints (§2.4, §3.3) [A] ----------------------------------------------------------------
# GET SENDER_NAME_PATH -> the §2.1 object plus an optional "comment"; unknown id -> 404/4040.
# GET SENDER_NAMES_PATH?page=&per_page=&status=&brand=&sender_name= -> {"total", "items"}.
# GET MESSAGES_PATH?message_uuid=..&status=..&page=&per_page= -> {"total", "items"}; the filter
# external_message_id is our assumption (not in the contract), repeated keys for several values.
LIST_ENVELOPE_KEYS = ("total", "items")  # [A] copies GET /dispatch (S6)
PAGE_PARAM, PER_PAGE_PARAM = "page", "per_page"  # [C] S10
MESSAGE_READ_FIELDS = (
    "messageUuid",
    "channelType",
    "senderName",
    "destination",
    "status",
    "statusTime",
    "errorCode",
    "externalMessageId",
    "tags",
)  # [A] fields of a GET /message item
FAKE_SENDER_NAME_STATUS_HOOK = "/__fake__/sender-names/{id}/status"  # [A] fake-server test hook
FAKE_MESSAGE_STATUS_HOOK = "/__fake__/messages/{uuid}/status"  # [A] fake-server sandbox hook

# --- Failed send items (§3.1) [A] ---------------------------------------------------------------------
# A failed item of POST /message has no "messageUuid", a non-201 "code" and maybe a "msg":
#   {"code": 7401, "msg": "Invalid destination"}
# The top level then has "errors": true.
ITEM_CODE_INVALID_DESTINATION = 7401  # [C] S4 dispatch errorCode, used by the fake for a bad number
ITEM_CODE_INVALID = 4220  # [A] any other per-item problem (unapproved name, missing content, bad ttl)
DESTINATION_PATTERN = r"^[0-9]{10,15}$"  # [I] digits, country code first, no "+"
TTL_MIN, TTL_MAX = 60, 86400  # [C]
STOP_MAX = 10_000  # [C] ids per POST /message/stop
UNDELIVERED_ERROR_CODE = 6969  # [A] the fake's error_code for "undelivered" (the code of the S8 example)


# --- i-dgtl texts (§1.2, §2.1, §3.1). [C] where documented, the rest [A]. The fake answers with these. --
class Text:
    NOT_AUTHENTICATED = "Not Authenticated"  # [C]
    BAD_CREDENTIALS = "Bad credentials"  # [C]
    ACCESS_DENIED = "Access Denied"  # [C]
    NOT_FOUND = "Not Found"  # [A]
    METHOD_NOT_ALLOWED = "Method Not Allowed"  # [A] 405 / 4050 (§2.5)
    TOO_MANY_REQUESTS = "Too Many Requests"  # [A] 429 / 4290
    # POST /sender-names, in the order the fake checks them [C] order of §6:
    INVALID_CHANNEL_TYPE = "Invalid channel type"  # [C]
    UNKNOWN_BRAND = "Unknown brand {value}"  # [C]
    UNKNOWN_COMMON_TYPE = "Unknown common type {value}"  # [A]
    NAME_PATTERN = "Sender name doesn't match pattern"  # [A]
    DATE_FROM_NOT_FUTURE = "Date from isn't greater than now"  # [C]
    INVALID_DATE_FROM = "Invalid dateFrom format"  # [A] not yyyy-MM-ddThh:mm:ssZ
    FIELD_REQUIRED = "{field} is required"  # [A]
    INVALID_INN = "Invalid counteragent INN"  # [A] not 10 or 12 digits
    FILES_REQUIRED = "Files are required for PROMO names"  # [A]
    TOO_MANY_FILES = "Too many files"  # [A] more than DOCUMENT_MAX_COUNT
    FILE_TOO_LARGE = "File {name} is too large"  # [A] more than DOCUMENT_MAX_BYTES
    FILE_TYPE = "File {name} has an unsupported type"  # [A] not PDF, PNG or JPEG
    DUPLICATE = "Duplicates with existing name (id = {id})"  # [C]
    BODY_REQUIRED = "body is required"  # [A] no "body" part, or not a JSON object
    # POST /message
    ARRAY_SIZE = "Array size must be between 1 and 1000"  # [A] also for a body that is not an array
    SENDER_NAME_NOT_APPROVED = "senderName not found or not approved"  # [A]
    INVALID_DESTINATION = "Invalid destination"  # [A]
    TTL_RANGE = "ttl must be between 60 and 86400"  # [A]
    UNSUPPORTED_CHANNEL = "Unsupported channel type"  # [A] the fake sends SMS only
    CONTENT_REQUIRED = "content is required"  # [A]
    EXTERNAL_ID_TOO_LONG = "externalMessageId is too long"  # [A] more than 100 characters
    # GET lists
    PAGE_WINDOW = "page*per_page must not exceed 10000"  # [A] text; the limit is [C]
    INVALID_JSON = "Invalid JSON"  # [A]
    UUIDS_REQUIRED = "uuids must be an array of at most 10000 ids"  # [A]


DOCUMENT_MAX_COUNT = 10  # [A] files per sender name
DOCUMENT_MAX_BYTES = 10 * 1024 * 1024  # [A] per file
INN_PATTERN = r"^([0-9]{10}|[0-9]{12})$"  # [A] no documented check: 10 or 12 digits
SENDER_NAME_REQUIRED_FIELDS = (
    "channelType",
    "commonType",
    "brand",
    "dateFrom",
    "senderName",
    "counteragentName",
    "counteragentInn",
)  # [C]
# [A] fee (RUB) the fake answers per brand (§2.6); the contract's example is 2000 for MTS.
FAKE_FEE_TABLE = {
    "MTS": 2000,
    "MEGAFON": 2500,
    "BEELINE": 2200,
    "TELE2": 1800,
    "MOTIV": 1000,
    "YOTA": 1000,
    "OTHER": 1500,
}
