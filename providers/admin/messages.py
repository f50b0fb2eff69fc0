"""Admin: messages with their timeline and status reports."""
