"""Run one of the sandbox's fake services (started by run_backoffice in sandbox mode)."""

from django.conf import settings
from django.core.management import BaseCommand, CommandError

from b24sms import sandbox


class Command(BaseCommand):
    help = "Serve the fake i-dgtl or the fake Bitrix24 of the sandbox until stopped (sandbox mode only)."

    def add_arguments(self, parser):
        parser.add_argument("service", choices=["idgtl", "bitrix24"])

    def handle(self, *args, **options):
        if not settings.SANDBOX:
            raise CommandError("The sandbox is off (B24SMS_SANDBOX is not set, or these are production settings).")
        out = lambda line: self.stdout.write(line) or self.stdout.flush()  # noqa: E731
        if options["service"] == "idgtl":
            sandbox.serve_fake_idgtl(out)
        else:
            sandbox.serve_fake_bitrix24(out)
