"""Everything b24sms knows or assumes about the i-dgtl HTTP API, in one place.

Source: shared/contracts/idgtl.md. Each value says whether it is confirmed ([C]), inferred ([I])
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

# [A] Document limits (§2.1): PDF, PNG, JPEG; defaults for the settings of the same meaning.
DOCUMENT_MIME_TYPES = {"application/pdf": "PDF", "image/png": "PNG", "image/jpeg": "JPEG"}


# --- Messages (§3) ----------------------------------------------------------------------------------
SEND_BATCH_MAX = 1000  # [C] 1-1000 messages per POST /message
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
