"""Admin for the Bitrix24 side; each module registers its own models."""
from . import messages, portals, usage  # noqa: F401
