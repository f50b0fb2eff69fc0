"""Tasks: send waiting messages, reconcile statuses, report statuses to Bitrix24."""
