# Written by hand (issue 10, item 5: secrets at rest, common/encryption.py).
#
# - client_secret, access_token, refresh_token, handler_secret and callback_secret: the plaintext columns
#   become text columns holding Fernet tokens (FIELD_ENCRYPTION_KEYS); the rows are encrypted in place.
# - handler_secret_index, callback_secret_index: the keyed hash (SECRET_INDEX_KEY) of each URL secret, unique;
#   they replace the unique constraints of the plaintext secrets (the HANDLER finds its installation by them).
# - application_token: replaced by application_token_hash (its keyed hash); the plaintext column is dropped.
#
# Needs both keys set when it runs (production: the environment; `make run` and the tests make theirs).
# Reversible, except the application tokens: going back decrypts every secret into its plaintext column again,
# but application_token comes back EMPTY (only its hash was kept), so every portal's HANDLER calls with auth,
# ONAPPUNINSTALL and ONAPPUPDATE are refused until the application is reinstalled there.

from django.db import migrations, models

import common.encryption
import providers.models

ENCRYPTED = [("providers_bitrixapplication", "client_secret"), ("providers_installation", "access_token"),
             ("providers_installation", "refresh_token"), ("providers_installation", "handler_secret"),
             ("providers_installation", "callback_secret")]
HASHED = [("application_token", "application_token_hash", providers.models.APPLICATION_TOKEN_PURPOSE),
          ("handler_secret", "handler_secret_index", providers.models.URL_SECRET_PURPOSE),
          ("callback_secret", "callback_secret_index", providers.models.URL_SECRET_PURPOSE)]


def secrets_encrypt(apps, schema_editor):
    connection = schema_editor.connection
    for source, target, purpose in HASHED:  # from the plaintext, before it is encrypted
        common.encryption.hash_column(connection, table="providers_installation", source=source, target=target,
                                      purpose=purpose)
    for table, column in ENCRYPTED:
        common.encryption.encrypt_plaintext_column(connection, table=table, column=column)
    common.encryption.deferred_checks_run(schema_editor)


def secrets_decrypt(apps, schema_editor):
    for table, column in ENCRYPTED:
        common.encryption.decrypt_column(schema_editor.connection, table=table, column=column)
    common.encryption.deferred_checks_run(schema_editor)


class Migration(migrations.Migration):

    dependencies = [
        ('providers', '0009_installation_quotas'),
    ]

    operations = [
        migrations.AddField(
            model_name='installation',
            name='application_token_hash',
            field=models.CharField(blank=True, editable=False, max_length=64, verbose_name='application token (keyed hash)'),
        ),
        migrations.AddField(
            model_name='installation',
            name='handler_secret_index',
            field=common.encryption.KeyedHashField(null=True, purpose='url-secret', source='handler_secret', verbose_name='handler secret (keyed hash)'),
        ),
        migrations.AddField(
            model_name='installation',
            name='callback_secret_index',
            field=common.encryption.KeyedHashField(null=True, purpose='url-secret', source='callback_secret', verbose_name='callback secret (keyed hash)'),
        ),
        migrations.AlterField(
            model_name='bitrixapplication',
            name='client_secret',
            field=common.encryption.EncryptedCharField(max_length=256, verbose_name='client_secret'),
        ),
        migrations.AlterField(
            model_name='installation',
            name='access_token',
            field=common.encryption.EncryptedCharField(blank=True, max_length=512, verbose_name='access token'),
        ),
        migrations.AlterField(
            model_name='installation',
            name='refresh_token',
            field=common.encryption.EncryptedCharField(blank=True, max_length=512, verbose_name='refresh token'),
        ),
        migrations.AlterField(
            model_name='installation',
            name='handler_secret',
            field=common.encryption.EncryptedCharField(default=providers.models.new_handler_secret, editable=False, max_length=64, verbose_name='handler secret'),
        ),
        migrations.AlterField(
            model_name='installation',
            name='callback_secret',
            field=common.encryption.EncryptedCharField(default=providers.models.new_callback_secret, editable=False, max_length=64, verbose_name='callback secret'),
        ),
        migrations.RunPython(secrets_encrypt, secrets_decrypt),
        migrations.AlterField(
            model_name='installation',
            name='handler_secret_index',
            field=common.encryption.KeyedHashField(purpose='url-secret', source='handler_secret', unique=True, verbose_name='handler secret (keyed hash)'),
        ),
        migrations.AlterField(
            model_name='installation',
            name='callback_secret_index',
            field=common.encryption.KeyedHashField(purpose='url-secret', source='callback_secret', unique=True, verbose_name='callback secret (keyed hash)'),
        ),
        migrations.RemoveField(
            model_name='installation',
            name='application_token',
        ),
    ]
