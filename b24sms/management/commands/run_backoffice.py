"""Start the whole back-office (web, worker, beat) with honcho; Ctrl-C stops them all."""
import os
import sys

from django.conf import settings
from django.core.management import BaseCommand


class Command(BaseCommand):
    help = "Run web, Celery worker and Celery beat together (the processes of the Procfile)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args, **options):
        from honcho.manager import Manager

        python = sys.executable
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        manager = Manager()
        processes = {
            "web": f"{python} manage.py runserver 0.0.0.0:{options['port']} --noreload",
            "worker": f"{python} -m celery -A b24sms worker --loglevel=INFO --concurrency=2",
            "beat": f"{python} -m celery -A b24sms beat --loglevel=INFO",
        }
        for name, command in processes.items():
            manager.add_process(name, command, cwd=str(settings.BASE_DIR), env=env)
        self.stdout.write(f"b24sms back-office: http://127.0.0.1:{options['port']}/admin/  (Ctrl-C stops everything)")
        manager.loop()
        sys.exit(manager.returncode)
