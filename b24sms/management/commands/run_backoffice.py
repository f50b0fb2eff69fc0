"""Start the whole back-office with honcho: web, worker, beat (and in the sandbox the two fakes).

One command starts them all; Ctrl-C stops them all. honcho also stops them all when one exits, so
the worker and beat run under b24sms/supervise.py, which starts them again when they exit (a worker
can exit after a Redis restart); a process that cannot even start still stops everything. The sandbox
(b24sms/sandbox.py) starts when nothing real is configured; production settings never start it.
runserver is a development server: it listens on 127.0.0.1 (``--host`` to change), and this command
refuses the production settings (production runs gunicorn: Dockerfile, docker-compose.yml, Procfile).
"""

import os
import shlex
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import BaseCommand, CommandError, call_command
from honcho.manager import Manager

from b24sms import sandbox

SUPERVISOR = Path(__file__).resolve().parents[2] / "supervise.py"


def supervised(name: str, command: str) -> str:
    """``command`` under the supervisor, which starts it again whenever it exits.

    Run by its path with -I: b24sms/ is not put on sys.path (b24sms/celery.py would hide the Celery
    library) and nothing loads Django there, so a bad setting shows in the supervised process only.
    """
    return f"{sys.executable} -I {shlex.quote(str(SUPERVISOR))} --name {name} -- {command}"


class Command(BaseCommand):
    help = "Run web, Celery worker and Celery beat together; in sandbox mode also the fake i-dgtl and fake Bitrix24."
    requires_system_checks = []  # the processes it starts run them, with the sandbox environment applied

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--host", default="127.0.0.1", help="Address runserver listens on (default 127.0.0.1: this machine only)."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Print the processes and their sandbox environment; start nothing."
        )

    def handle(self, *args, **options):
        module = os.environ.get("DJANGO_SETTINGS_MODULE", "") or getattr(settings, "SETTINGS_MODULE", "")
        if module.endswith("production"):
            raise CommandError(
                "run_backoffice starts Django's development server: not with production settings. "
                "Use `make run` (b24sms.settings.local), or gunicorn in production."
            )
        port = options["port"]
        python = sys.executable
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        enabled, reason = sandbox.sandbox_decision()
        if enabled and not options["dry_run"] and sandbox.fakes_missing():
            enabled, reason = False, f"the fake services are missing ({', '.join(sandbox.fakes_missing())})"
        celery = f"{python} -m celery -A b24sms"
        processes = {
            "web": f"{python} manage.py runserver {options['host']}:{port} --noreload",
            "worker": supervised("worker", f"{celery} worker --loglevel=INFO --concurrency=2"),
            "beat": supervised("beat", f"{celery} beat --loglevel=INFO"),
        }
        if enabled:
            sandbox_env = sandbox.sandbox_environment(port)
            env.update(sandbox_env)
            processes["idgtl"] = f"{python} manage.py sandbox_fake idgtl"
            processes["bitrix24"] = f"{python} manage.py sandbox_fake bitrix24"
            self.stdout.write(
                self.style.WARNING(
                    f"SANDBOX ({reason}): fake i-dgtl {sandbox_env['IDGTL_API_URL']}, "
                    f"fake Bitrix24 {sandbox.bitrix24_url()}"
                )
            )
        else:
            self.stdout.write(f"Sandbox off: {reason}.")
            if not options["dry_run"] and sandbox.sandbox_leave():
                self.stdout.write(
                    "The sandbox portal's installation is marked removed: nothing calls the fakes any more."
                )
        if options["dry_run"]:
            for name, command in processes.items():
                self.stdout.write(f"{name}: {command}")
            return
        if enabled:
            # This process prepares the database for the sandbox with the same settings its children get.
            os.environ.update(sandbox_env)
            settings.SANDBOX = True
            for name in (
                "IDGTL_API_URL",
                "IDGTL_SENDER_NAMES_TOKEN",
                "IDGTL_MESSAGES_TOKEN",
                "B24_CLIENT_ID",
                "B24_CLIENT_SECRET",
                "B24_OAUTH_URL",
                "PUBLIC_BASE_URL",
            ):
                setattr(settings, name, sandbox_env[name])
            sandbox.sandbox_prepare()
        call_command("createcachetable", verbosity=0)

        manager = Manager()
        for name, command in processes.items():
            manager.add_process(name, command, cwd=str(settings.BASE_DIR), env=env)
        self.stdout.write(f"b24sms back-office: http://127.0.0.1:{port}/admin/  (Ctrl-C stops everything)")
        manager.loop()
        sys.exit(manager.returncode)
