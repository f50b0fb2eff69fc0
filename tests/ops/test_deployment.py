"""What ships and how it starts: no secrets in the image, production settings unless told otherwise,
no development server on a public interface, gunicorn only reachable through the reverse proxy."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parent.parent.parent
PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "p" * 20 + "-a-real-production-secret-key-0123456789",
    "DJANGO_ALLOWED_HOSTS": "sms.example.com",
    "PUBLIC_BASE_URL": "https://sms.example.com",
    "METRICS_TOKEN": "metrics-token-0123456789abcdef",
    "IDGTL_SENDER_NAMES_TOKEN": "a2V5OjI=",
    "IDGTL_MESSAGES_TOKEN": "a2V5OjE=",
    "B24_CLIENT_ID": "local.test.1",
    "B24_CLIENT_SECRET": "secret",
    "FIELD_ENCRYPTION_KEYS": "Lw3kq2xAw0Tr8Q2b9bJxk4m6Zt6l8QnSx1yGm8m6v0Y=",
    "SECRET_INDEX_KEY": "a-production-secret-index-key-0123456789abcdef",
}


def clean_env(tmp_path, **extra) -> dict:
    """This process's environment without any Django/b24sms setting (pytest's settings module included)."""
    prefixes = (
        "DJANGO_",
        "B24_",
        "B24SMS_",
        "IDGTL_",
        "METRICS_",
        "TRUSTED_PROXIES",
        "PUBLIC_BASE_URL",
        "DATABASE_",
        "CELERY_",
        "REDIS_URL",
        "FIELD_ENCRYPTION_KEYS",
        "SECRET_INDEX_KEY",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "LOG_LEVEL": "WARNING"}, **extra)
    return env


def run(args, env, timeout=120):
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


# --- The image ------------------------------------------------------------------------------------
def dockerignore_patterns():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern:
    """Docker's .dockerignore matching (Go filepath.Match plus `**`), for one cleaned pattern."""
    pattern = pattern.strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def excluded_from_image(path: str) -> bool:
    """Whether `docker build` leaves the path out: a pattern matches it or one of its parent folders;
    the last matching pattern wins (a `!` pattern brings a path back)."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for pattern in dockerignore_patterns():
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern[1:] if negate else pattern)
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negate
    return excluded


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".env.production",
        "deploy/.env",
        "var/b24sms.sqlite3",
        "var/media/sendernames/charter.pdf",
        "b24sms.sqlite3",
        "var/celery-broker.sqlite3-wal",
        "media/uploads/passport.pdf",
        ".git/config",
        ".git/objects/ab/cdef",
        ".venv/bin/python",
        "b24sms/__pycache__/settings.cpython-311.pyc",
        "providers/x.pyc",
        ".pytest_cache/v/cache/lastfailed",
        "staticfiles/admin/css/base.css",
        "tests/conftest.py",
        "bench/_common.py",
        "fakes/idgtl.py",
        "docs/screenshots/login.png",
        ".ci/run",
        "certs/server.key",
        "tls.pem",
        "gunicorn.log",
    ],
)
def test_secrets_local_data_and_history_stay_out_of_the_image(path):
    assert excluded_from_image(path), path


@pytest.mark.parametrize(
    "path",
    [
        "manage.py",
        "requirements.txt",
        "b24sms/settings/production.py",
        "b24sms/wsgi.py",
        "b24sms/healthprobe.py",
        "providers/views/inbound.py",
        "providers/migrations/0001_initial.py",
        "sendernames/validation.py",
        "idgtl/client.py",
        "bitrix24/client.py",
        "templates/admin/base_site.html",
        "locale/ru/LC_MESSAGES/django.mo",
        "providers/templates/providers/x.html",
    ],
)
def test_what_the_image_needs_is_sent(path):
    assert not excluded_from_image(path), path


def test_the_dockerfile_copies_no_secret_and_runs_gunicorn():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copies = [line for line in dockerfile.splitlines() if line.split()[:1] in (["COPY"], ["ADD"])]
    assert copies and not any(".env" in line or "var/" in line for line in copies), copies
    assert "DJANGO_SETTINGS_MODULE=b24sms.settings.production" in dockerfile
    assert 'CMD ["gunicorn"' in dockerfile and "runserver" not in dockerfile


# --- docker compose -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_publishes_gunicorn_on_loopback_only(compose):
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    assert published["web"] == ["127.0.0.1:8000:8000"]
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), (name, port)  # never every interface


def test_compose_has_no_default_database_password(compose):
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD:-" not in text
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "${POSTGRES_PASSWORD:?" in compose["x-app"]["environment"]["DATABASE_URL"]


def test_compose_web_refuses_to_start_on_an_unsafe_setting(compose):
    command = compose["services"]["web"]["command"]
    assert command.index("manage.py check --deploy --fail-level ERROR") < command.index("gunicorn")
    assert compose["x-app"]["environment"]["DJANGO_SETTINGS_MODULE"] == "b24sms.settings.production"


# --- Procfile, Makefile, run_backoffice ------------------------------------------------------------
def test_the_procfile_runs_gunicorn_not_the_development_server():
    from honcho.environ import parse_procfile

    processes = parse_procfile((ROOT / "Procfile").read_text()).processes
    assert set(processes) == {"web", "worker", "beat"}
    assert processes["web"].startswith("gunicorn b24sms.wsgi:application ")
    assert not any("runserver" in command for command in processes.values())


def test_make_run_names_the_development_settings_and_make_test_does_not():
    run_steps = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    manage_lines = [line for line in run_steps.splitlines() if "manage.py" in line]
    assert manage_lines and all(
        "DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-b24sms.settings.local}" in line for line in manage_lines
    ), manage_lines
    assert any("DJANGO_DEBUG=${DJANGO_DEBUG:-true}" in line and "run_backoffice" in line for line in manage_lines)
    test_steps = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "pytest" in test_steps and "DJANGO_SETTINGS_MODULE" not in test_steps  # pytest.ini names the test settings


@pytest.mark.django_db
def test_run_backoffice_serves_on_loopback_only():
    out = io.StringIO()
    call_command("run_backoffice", "--dry-run", stdout=out)
    web = next(line for line in out.getvalue().splitlines() if line.startswith("web: "))
    assert re.search(r"runserver 127\.0\.0\.1:\d+ ", web), web
    out = io.StringIO()
    call_command("run_backoffice", "--dry-run", "--host", "0.0.0.0", "--port", "8123", stdout=out)  # asked for
    assert "runserver 0.0.0.0:8123 " in out.getvalue()


def test_run_backoffice_refuses_production_settings(monkeypatch):
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "b24sms.settings.production")
    with pytest.raises(CommandError, match="development server"):
        call_command("run_backoffice", "--dry-run", stdout=io.StringIO())


# --- Settings chosen when none is named ---------------------------------------------------------------
SHOW = (
    "from django.conf import settings; import os; "
    "print(os.environ['DJANGO_SETTINGS_MODULE'], settings.DEBUG, settings.B24_REQUIRE_HTTPS)"
)


@pytest.mark.parametrize(
    "entry",
    [
        ["-c", "import b24sms.wsgi; " + SHOW],
        ["-c", "import b24sms.celery, django; django.setup(); " + SHOW],
        ["manage.py", "shell", "-v", "0", "-c", SHOW],
    ],
)
def test_without_a_settings_module_every_entry_point_runs_production(tmp_path, entry):
    result = run([sys.executable, *entry], clean_env(tmp_path, **PRODUCTION_ENV))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["b24sms.settings.production", "False", "True"]


def test_without_a_settings_module_a_missing_secret_key_stops_the_server(tmp_path):
    result = run([sys.executable, "-c", "import b24sms.wsgi"], clean_env(tmp_path))
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr  # not a silent development default


@pytest.mark.parametrize("debug, expected", [(None, "False"), ("true", "True"), ("false", "False")])
def test_the_development_settings_turn_debug_on_only_when_asked(tmp_path, debug, expected):
    extra = {"DJANGO_SETTINGS_MODULE": "b24sms.settings.local", **({"DJANGO_DEBUG": debug} if debug else {})}
    result = run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)",
        ],
        clean_env(tmp_path, **extra),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_the_development_settings_make_secret_keys_once_and_keep_them(tmp_path):
    """`make run` without keys: made on the first start, in a file only its owner reads, the same after a restart."""
    keys_file = tmp_path / "var" / "local-secret-keys.env"
    show = [
        sys.executable,
        "-c",
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.FIELD_ENCRYPTION_KEYS, settings.SECRET_INDEX_KEY)",
    ]
    env = clean_env(
        tmp_path, DJANGO_SETTINGS_MODULE="b24sms.settings.local", B24SMS_LOCAL_SECRET_KEYS_FILE=str(keys_file)
    )
    first, again = run(show, env), run(show, env)
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout and first.stdout.strip()
    assert keys_file.stat().st_mode & 0o777 == 0o600
    check = run([sys.executable, "manage.py", "check"], env)
    assert check.returncode == 0 and "E005" not in check.stdout + check.stderr, check.stderr
    given = run(show, {**env, "FIELD_ENCRYPTION_KEYS": PRODUCTION_ENV["FIELD_ENCRYPTION_KEYS"]})
    assert given.stdout.startswith(f"['{PRODUCTION_ENV['FIELD_ENCRYPTION_KEYS']}']")  # the environment's keys win


def test_check_deploy_names_every_unsafe_production_setting(tmp_path):
    unsafe = {
        **PRODUCTION_ENV,
        "DJANGO_SECRET_KEY": "insecure-local-development-key-change-me-0123456789abcdef",
        "DJANGO_ALLOWED_HOSTS": "*",
        "PUBLIC_BASE_URL": "http://sms.example.com",
        "METRICS_TOKEN": "",
        "B24_ALLOWED_PORTAL_DOMAINS": "",
        "TRUSTED_PROXIES": "10.0.0.0/8,proxy.internal",
    }
    result = run([sys.executable, "manage.py", "check", "--deploy"], clean_env(tmp_path, **unsafe))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for check_id in ("b24sms.E001", "b24sms.E002", "b24sms.E003", "b24sms.E004", "b24sms.E010", "b24sms.W004"):
        assert f"({check_id})" in output, (check_id, output)
    safe = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        clean_env(tmp_path, **PRODUCTION_ENV),
    )
    assert safe.returncode == 0 and "no issues" in safe.stdout, safe.stdout + safe.stderr


def test_production_refuses_to_start_without_the_secret_keys(tmp_path):
    """Not only `check --deploy`: every management command (migrate first) stops without the keys."""
    keyless = {
        name: value
        for name, value in PRODUCTION_ENV.items()
        if name not in ("FIELD_ENCRYPTION_KEYS", "SECRET_INDEX_KEY")
    }
    result = run([sys.executable, "manage.py", "migrate", "--noinput"], clean_env(tmp_path, **keyless))
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "(b24sms.E005)" in output and "(b24sms.E006)" in output, output
    assert not (tmp_path / "db.sqlite3").exists() or "Applying" not in output  # nothing was migrated


# --- Dependency audit (.ci/audit_dependencies.py) --------------------------------------------------
@pytest.fixture(scope="module")
def audit():
    import importlib.util

    spec = importlib.util.spec_from_file_location("audit_dependencies", ROOT / ".ci" / "audit_dependencies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_audit_fails_on_a_known_vulnerability(audit):
    report = {
        "dependencies": [
            {
                "name": "django",
                "version": "5.2.0",
                "vulns": [
                    {
                        "id": "PYSEC-2025-1",
                        "fix_versions": ["5.2.1"],
                        "aliases": ["CVE-2025-0001"],
                        "description": "...",
                    }
                ],
            },
            {"name": "requests", "version": "2.34.2", "vulns": []},
        ],
        "fixes": [],
    }
    code, lines = audit.verdict(report)
    assert code == 1
    assert any("VULNERABLE django==5.2.0: PYSEC-2025-1 (CVE-2025-0001); fixed in 5.2.1" in line for line in lines)


def test_the_audit_reports_but_does_not_fail_when_the_vulnerability_data_is_unreachable(audit):
    report = {
        "dependencies": [
            {"name": "django", "skip_reason": "Dependency not found on PyPI and could not be audited: django (5.2.19)"},
            {"name": "requests", "version": "2.34.2", "vulns": []},
        ]
    }
    code, lines = audit.verdict(report)
    assert code == 0
    assert any(line.startswith("WARNING: 1 of 2 packages could not be audited") for line in lines)
    assert lines[-1] == "pip-audit: no known vulnerabilities in the 1 package(s) audited."


def test_every_requirement_is_pinned_and_the_audit_runs_in_ci():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r "):
                assert re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+==[A-Za-z0-9_.\-]+", line), (name, line)
    assert "pip-audit==" in (ROOT / "requirements-dev.txt").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index(".ci/audit_dependencies.py") < ci.index("make test")
