"""Container healthcheck: `python -m b24sms.healthprobe [PATH]` exits 0 when /healthz answers 200.

Production settings reject a Host outside DJANGO_ALLOWED_HOSTS and redirect plain HTTP to HTTPS,
so the probe sends the first allowed host as Host and `X-Forwarded-Proto: https` (the header
SECURE_PROXY_SSL_HEADER trusts), exactly like the reverse proxy in front of gunicorn would.
"""

import os
import sys
import urllib.error
import urllib.request


def probe_host(allowed_hosts: str) -> str:
    for host in (allowed_hosts or "").split(","):
        host = host.strip()
        if host and host != "*":
            return host.lstrip(".")  # ".example.com" allows example.com and its subdomains
    return "localhost"


def probe_headers(environ=os.environ) -> dict:
    return {"Host": probe_host(environ.get("DJANGO_ALLOWED_HOSTS", "")), "X-Forwarded-Proto": "https"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else "/healthz?check=database"
    base = os.environ.get("HEALTHZ_PROBE_BASE", "http://127.0.0.1:8000")
    request = urllib.request.Request(base + path, headers=probe_headers())
    try:
        with urllib.request.urlopen(request, timeout=float(os.environ.get("HEALTHZ_PROBE_TIMEOUT", "8"))) as response:
            print(response.read().decode(errors="replace"))
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.read().decode(errors="replace")[:500])
    except OSError as exc:
        print(f"unreachable: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
