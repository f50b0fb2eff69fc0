"""Admin: Bitrix24 applications, installations, providers and registrations."""
