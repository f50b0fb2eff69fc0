"""Settings of the processes bench/cpu_per_sms.py starts: the end-to-end benches' settings with the
trivial form view of bench/cpu_urls.py.

BENCH_CELERY_DB_REUSE_MAX=N (bench/cpu_per_sms.py --worker-db-reuse N) lets each Celery pool process
keep its database connection for N tasks instead of Celery's default of closing it around every task
(what that costs is part of the figures; see docs/performance.md).
"""

import os

from bench.pipeline_settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.cpu_urls"
if os.environ.get("BENCH_CELERY_DB_REUSE_MAX"):
    CELERY_DB_REUSE_MAX = int(os.environ["BENCH_CELERY_DB_REUSE_MAX"])
