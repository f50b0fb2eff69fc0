"""Admin for the Bitrix24 side; each module registers its own models."""

from providers.admin import messages, portals, usage  # noqa: F401
