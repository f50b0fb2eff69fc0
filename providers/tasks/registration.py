"""Tasks: register, update, remove and check providers on installations."""
