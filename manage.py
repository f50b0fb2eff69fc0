#!/usr/bin/env python
"""Django's command-line utility for b24sms."""

import os
import sys


def main():
    # Production unless told otherwise: `make run` names b24sms.settings.local, pytest b24sms.settings.test.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "b24sms.settings.production")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
