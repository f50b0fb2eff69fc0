"""The fixtures of the apps whose actions the audit trail records."""

from tests.providers_portals.conftest import application, approved_sender_name, make_installation, portal  # noqa: F401
from tests.sendernames.conftest import account, make_application  # noqa: F401
