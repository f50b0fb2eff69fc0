"""Settings of the processes bench/cpu_per_sms.py starts: the end-to-end benches' settings with the
trivial form view of bench/cpu_urls.py."""
from bench.pipeline_settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.cpu_urls"
