"""The sandbox's fixed facts: the fake portal's identity, the fakes' ports and keys (b24sms/sandbox.py runs it).

Here, on the ground floor, because an app also needs them: sending a test SMS on the sandbox portal
asks the fake Bitrix24 to post it (providers/services/test_sms.py).
"""

import os

SANDBOX_CLIENT_ID = "local.b24sms.sandbox"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret-not-a-real-one"  # noqa: S105 (a fake's, public by design)
SANDBOX_PORTAL_DOMAIN = "sandbox.bitrix24.test"
SANDBOX_MEMBER_ID = "b24sms0sandbox0portal0member0id"
# The fake i-dgtl's default keys (see fakes/idgtl.py): public, they only open the fake.
SANDBOX_SENDER_NAMES_KEY = "c2VuZGVyOm5hbWVz"
SANDBOX_MESSAGES_KEY = "bWVzc2FnZXM6a2V5"
# Documented in the README: SMS to numbers ending in 0000 end "undelivered" in the sandbox (the fake's rule).
UNDELIVERABLE_EXAMPLE = "+79990000000"

DEFAULTS = {
    "B24SMS_SANDBOX_IDGTL_PORT": "8101",
    "B24SMS_SANDBOX_BITRIX24_PORT": "8102",
    "B24SMS_SANDBOX_PORTAL_PORT": "8103",  # the fake portal's REST listener (its client_endpoint)
    "B24SMS_SANDBOX_REVIEW_DELAY": "20",
    "B24SMS_SANDBOX_REVIEW_STATUS": "APPROVED",
    "B24SMS_SANDBOX_DELIVERY_DELAY": "3",
}


def option(name: str, environ=None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get(name) or DEFAULTS[name]


def idgtl_url(environ=None) -> str:
    return f"http://127.0.0.1:{option('B24SMS_SANDBOX_IDGTL_PORT', environ)}/api/v1"


def bitrix24_url(environ=None) -> str:
    return f"http://127.0.0.1:{option('B24SMS_SANDBOX_BITRIX24_PORT', environ)}"
