"""Encrypt every stored secret again with the newest of FIELD_ENCRYPTION_KEYS (the first one).

Key rotation (README "Secrets at rest"): put a new key first in FIELD_ENCRYPTION_KEYS, keeping the old
ones after it, restart, run this command, then remove the old keys. Safe while b24sms runs: each value is
swapped only if it was not changed meanwhile (a token refresh wins), and running it twice is harmless.
The keyed hashes (SECRET_INDEX_KEY) do not change.
"""

from django.core.management import BaseCommand, CommandError
from django.db import connection

from common.encryption import encrypted_columns, reencrypt_column


class Command(BaseCommand):
    help = "Encrypt every stored secret again with the newest FIELD_ENCRYPTION_KEYS key (then the old keys can go)."

    def handle(self, *args, **options):
        undecryptable = []
        for model, field in encrypted_columns():
            counts = reencrypt_column(
                connection, table=model._meta.db_table, column=field.column, pk=model._meta.pk.column
            )
            label = f"{model._meta.label}.{field.name}"
            self.stdout.write(
                f"{label}: {counts['rotated']} re-encrypted, {counts['skipped']} changed meanwhile "
                f"(already with the newest key), {counts['undecryptable']} undecryptable"
            )
            if counts["undecryptable"]:
                undecryptable.append(label)
        if undecryptable:
            raise CommandError(
                f"Values of {', '.join(undecryptable)} decrypt with none of FIELD_ENCRYPTION_KEYS: they were left as "
                "they are. Put back the key they were encrypted with, run this command again, and keep that key "
                "until it reports none."
            )
        self.stdout.write(
            self.style.SUCCESS("Every secret is encrypted with the newest key: the older keys can be removed.")
        )
