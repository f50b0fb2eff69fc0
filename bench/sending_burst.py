"""Benchmark 3: a burst of 10,000 messages from the handler to i-dgtl, batched vs one call per message.

The burst is stored through the handler's service (``message_receive``, as a HANDLER call does; its
time is printed but not part of the ratio), then sent to the fake i-dgtl (real HTTP) by the sending
service: first batched (one ``POST /message`` per 1000, the production setting), then the baseline:
the same pipeline with one HTTP call per message (MESSAGES_SEND_BATCH_SIZE=1) on a sample of the
burst (--baseline-messages, default 2000, to keep the run short; the rate is per message).
Prints messages/s of both and the ratio (goal >= 10), and checks each message reached i-dgtl once.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/b24sms_bench CELERY_BROKER_URL=redis://127.0.0.1:6379/6 \
        python bench/sending_burst.py [--messages 10000] [--baseline-messages 2000]
"""

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import bench_rows, drop_queue, setup_django  # noqa: E402

QUEUE = "bench-sending"


def store_burst(installation, prefix: str, count: int, threads: int = 4) -> float:
    """Store ``count`` messages as HANDLER calls do; returns the seconds it took."""
    from django.db import connection

    from providers.handler_form import handler_form_parse
    from providers.services.intake import message_receive

    body = (
        "module_id=crm&bindings%5B0%5D%5BOWNER_TYPE_ID%5D=3&bindings%5B0%5D%5BOWNER_ID%5D=1&type=SMS&code=bench"
        "&message_to=%2B7999{n:07d}&message_body=Code+{n}&message_id=" + prefix + "{n:08d}"
    )

    def store(chunk):
        try:
            for n in chunk:
                message_receive(installation=installation, form=handler_form_parse(body.format(n=n)))
        finally:
            connection.close()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(store, [range(i, count, threads) for i in range(threads)]))
    return time.monotonic() - started


def send_all(batch_size: int) -> tuple[float, int]:
    from providers.models import Message, MessageState
    from providers.services.sending import messages_send_waiting

    started = time.monotonic()
    sent = 0
    while Message.objects.filter(installation__member_id="bench-sending", state=MessageState.RECEIVED).exists():
        sent += messages_send_waiting(batch_size=batch_size, time_budget=3600)
    return time.monotonic() - started, sent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--baseline-messages", type=int, default=2000)
    parser.add_argument(
        "--idgtl-rate-limit",
        type=float,
        default=0.0,
        help="IDGTL_RATE_LIMIT_PER_SECOND for both runs (default 0: off, to compare the pipelines "
        "themselves; the production default of 10 calls/s would cap the baseline at 10 msgs/s)",
    )
    args = parser.parse_args()
    os.environ["IDGTL_RATE_LIMIT_PER_SECOND"] = str(args.idgtl_rate_limit)
    _db, broker_url = setup_django(QUEUE)

    from django.db import connection

    from fakes.idgtl import FakeIdgtl
    from idgtl.services import account_get_default
    from providers.models import Message

    fake = FakeIdgtl().start()
    try:
        fake.allowed_sender_names.add("Bench")
        account = account_get_default()
        account.api_url, account.messages_key = fake.url, fake.messages_key
        account.save()
        installation, _provider = bench_rows("bench-sending")
        Message.objects.all().delete()  # the bench database: nothing else may be waiting to be sent
        run = str(int(time.time()))

        intake_seconds = store_burst(installation, f"b{run}", args.messages)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE providers_message")
        batched_seconds, batched_sent = send_all(batch_size=1000)
        batched_posts = sum(1 for r in fake.requests if r.method == "POST" and r.path.endswith("/message"))
        accepted = len(fake.messages)

        store_burst(installation, f"s{run}", args.baseline_messages)
        fake.requests.clear()
        single_seconds, single_sent = send_all(batch_size=1)
        single_posts = sum(1 for r in fake.requests if r.method == "POST" and r.path.endswith("/message"))
        external_ids = [m.get("externalMessageId") for m in fake.messages.values()]
    finally:
        fake.stop()
        drop_queue(broker_url, QUEUE)

    batched_rate = batched_sent / batched_seconds
    single_rate = single_sent / single_seconds
    print(
        f"burst: {args.messages} messages stored through the handler service in {intake_seconds:.1f} s "
        f"({args.messages / intake_seconds:.0f}/s, 4 threads; not part of the ratio)"
    )
    print(
        f"batched (1000 per POST /message): {batched_sent} sent in {batched_seconds:.2f} s with {batched_posts} "
        f"calls = {batched_rate:.0f} msgs/s"
    )
    print(
        f"baseline (one call per message):  {single_sent} sent in {single_seconds:.2f} s with {single_posts} "
        f"calls = {single_rate:.0f} msgs/s"
    )
    print(
        f"ratio: {batched_rate / single_rate:.1f} (goal >= 10); i-dgtl client rate limit: "
        f"{args.idgtl_rate_limit:g} calls/s (0 = off)"
    )
    duplicates = len(external_ids) - len(set(external_ids))
    print(f"accepted by i-dgtl: {len(external_ids)} (batched run {accepted}); sent twice: {duplicates}")
    Message.objects.filter(installation=installation).delete()
    if duplicates or accepted != args.messages or batched_sent != args.messages:
        sys.exit(1)


if __name__ == "__main__":
    main()
