"""Create the first admin user: from DJANGO_SUPERUSER_* variables, or by asking when interactive."""

import os
import sys

from django.contrib.auth import get_user_model
from django.core.management import BaseCommand, call_command


class Command(BaseCommand):
    help = "Create an admin user from DJANGO_SUPERUSER_USERNAME/PASSWORD/EMAIL, or ask for one, unless one exists."

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("An admin user exists already.")
            return
        if os.environ.get("DJANGO_SUPERUSER_USERNAME") and os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
            os.environ.setdefault("DJANGO_SUPERUSER_EMAIL", "")
            call_command("createsuperuser", interactive=False, verbosity=0)
            self.stdout.write(f"Created admin user {os.environ['DJANGO_SUPERUSER_USERNAME']}.")
        elif sys.stdin.isatty():
            self.stdout.write("No admin user yet: create one.")
            call_command("createsuperuser")
        else:
            self.stderr.write(
                "No admin user and no terminal: set DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD."
            )
