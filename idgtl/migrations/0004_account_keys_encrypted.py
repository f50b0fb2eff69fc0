# Written by hand (issue 10, item 5: secrets at rest, common/encryption.py). The i-dgtl keys' plaintext
# columns become text columns holding Fernet tokens (FIELD_ENCRYPTION_KEYS), the rows encrypted in place.
# Needs FIELD_ENCRYPTION_KEYS set when it runs. Reversible: going back decrypts the keys into plaintext again.

from django.db import migrations

import common.encryption

COLUMNS = ("sender_names_key", "messages_key")


def keys_encrypt(apps, schema_editor):
    for column in COLUMNS:
        common.encryption.encrypt_plaintext_column(schema_editor.connection, table="idgtl_idgtlaccount", column=column)
    common.encryption.deferred_checks_run(schema_editor)


def keys_decrypt(apps, schema_editor):
    for column in COLUMNS:
        common.encryption.decrypt_column(schema_editor.connection, table="idgtl_idgtlaccount", column=column)
    common.encryption.deferred_checks_run(schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ('idgtl', '0003_idgtlaccount_balance'),
    ]

    operations = [
        migrations.AlterField(
            model_name='idgtlaccount',
            name='messages_key',
            field=common.encryption.EncryptedCharField(blank=True, help_text='API key of type TOKEN_1, used to send SMS.', max_length=512, verbose_name='messages key (TOKEN_1)'),
        ),
        migrations.AlterField(
            model_name='idgtlaccount',
            name='sender_names_key',
            field=common.encryption.EncryptedCharField(blank=True, help_text="API key of type TOKEN_2, sent unchanged as 'Authorization: Basic KEY'.", max_length=512, verbose_name='sender-names key (TOKEN_2)'),
        ),
        migrations.RunPython(keys_encrypt, keys_decrypt),
    ]
