"""Benchmark 5: a worker SIGKILLed mid-send; seconds from the kill to the last final status, against a run
without the kill.

Real processes: gunicorn serving the project, a Celery worker (prefork, concurrency 2, its own
process group), a real ``celery beat`` (DatabaseScheduler; its ``messages-send-waiting`` sweep runs
every 15 s and takes over sends whose lease lapsed), PostgreSQL and Redis; the fakes over HTTP in
this process. The worker's ``IDGTL_TIMEOUT`` is shortened to 10 s (``--idgtl-timeout``; production:
70 s); the connect timeout (5 s) and the lease margin (10 s) keep their defaults, so a send's lease
is 5 + 10 + 10 = 25 s.

Each run: a new portal; the fake portal posts N SMS to the HANDLER; the fake i-dgtl takes every
``POST /message`` at once (and delivers a second later, calling back ``sent`` then ``delivered``)
but holds its answer ``IDGTL_TIMEOUT`` - 1 s. Once the burst is stored and a ``POST /message`` is
held (the "kill point"), the fake stops holding answers and:

* kill run: the worker's whole process group is SIGKILLed and a new worker started at once (as a
  process manager would): the held messages were taken by i-dgtl, but the worker never learnt their
  uuids; their lease lapses, beat's sweep looks them up (``GET /message``) and never resends them;
* baseline run: nothing is killed (the held answers arrive when the hold ends).

Printed per run: seconds from the kill point to the last message final in b24sms (``final_at``) and
to the last final status accepted by the portal, messages in held sends at the kill, and how many
messages i-dgtl received more than once (``externalMessageId`` counted at the fake; must be 0). The
goal (issue 8): every message final within ``IDGTL_TIMEOUT`` + 60 s of the kill.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/b24sms_bench9 CELERY_BROKER_URL=redis://127.0.0.1:6379/8 \
        .venv/bin/python bench/recovery.py [--messages 500] [--rounds 2] [--idgtl-timeout 10]
"""

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import setup_django  # noqa: E402
from bench._pipeline import (  # noqa: E402
    PROCESS_SETTINGS,
    Processes,
    beat_sweeps,
    bench_environment,
    forget_queue,
    forget_scheduling_keys,
    free_port,
    load_average,
    point_default_account_at,
    portal_installation,
    retire_old_rows,
    send_burst,
    timed_fakes,
    wait_for,
)

QUEUE = f"bench-recovery-{os.getpid()}"
FINALS = {"delivered", "undelivered", "failed"}


def held_posts(fake_idgtl, since: int) -> list:
    """POST /message requests (recorded from index ``since``) not answered yet."""
    return [
        r
        for r in list(fake_idgtl.requests)[since:]
        if r.method == "POST" and r.path.endswith("/message") and r.status is None
    ]


def one_run(mode: str, n_run: int, args, fake_b24, fake_idgtl, processes: Processes, base_url: str, beat) -> dict:
    from providers.models import Message, MessageState

    portal, installation = portal_installation(fake_b24, base_url)
    worker = processes.worker(QUEUE, args.concurrency, f"worker-{n_run}a")
    fake_idgtl.send_answer_delay = args.idgtl_timeout - 1
    since = len(fake_idgtl.requests)
    load = load_average()
    ids, intake_seconds, refused = send_burst(
        fake_b24, portal, args.messages, threads=args.threads, first_number=n_run * 100_000 + 1
    )
    wait_for(lambda: held_posts(fake_idgtl, since), 60, 0.02, "a POST /message to be held")
    held = held_posts(fake_idgtl, since)
    kill_at = time.time()
    if mode == "kill":
        Processes.kill_group(worker)
    fake_idgtl.send_answer_delay = 0
    in_held = sum(len(r.json) for r in held if isinstance(r.json, list))
    states_at_kill = Counter(Message.objects.filter(installation=installation).values_list("state", flat=True))
    if mode == "kill":
        restart_started = time.time()
        worker = processes.worker(QUEUE, args.concurrency, f"worker-{n_run}b")
        restart_seconds = time.time() - restart_started
    else:
        restart_seconds = None

    wanted = set(ids)
    bound = args.idgtl_timeout + 60

    def final_everywhere():
        done_here = Message.objects.filter(installation=installation, final_at__isnull=False).count()
        at_portal = {
            mid
            for _t, member, mid, status in list(fake_b24.status_log)
            if member == portal.member_id and status in FINALS
        }
        return done_here >= len(wanted) and wanted <= at_portal

    wait_for(final_everywhere, bound + args.extra_wait, 0.25)
    waited_until = time.time()
    time.sleep(2.0)  # a message sent twice would show now
    messages = Message.objects.filter(installation=installation)
    final_times = [m.final_at.timestamp() for m in messages.exclude(final_at__isnull=True).only("final_at")]
    portal_finals = {}
    for t, member, mid, status in sorted(fake_b24.status_log):
        if member == portal.member_id and status in FINALS:
            portal_finals.setdefault(mid, t)
    pks = {str(pk) for pk in messages.values_list("pk", flat=True)}
    sent = Counter(
        item.get("externalMessageId")
        for r in list(fake_idgtl.requests)[since:]
        if r.method == "POST" and r.path.endswith("/message") and isinstance(r.json, list)
        for item in r.json
        if item.get("externalMessageId") in pks
    )
    lookups = sum(1 for r in list(fake_idgtl.requests)[since:] if r.method == "GET" and r.path.endswith("/message"))
    sweeps = [t - kill_at for t in beat_sweeps(beat) if kill_at <= t <= waited_until]
    processes.stop(worker)
    return {
        "mode": mode,
        "messages": len(ids),
        "refused": refused,
        "intake": intake_seconds,
        "load": load,
        "in_held": in_held,
        "held_posts": len(held),
        "states_at_kill": dict(states_at_kill),
        "restart": restart_seconds,
        "final_here": len(final_times),
        "last_here": max(final_times) - kill_at if final_times else float("nan"),
        "final_portal": len(set(portal_finals) & wanted),
        "last_portal": max(portal_finals.values()) - kill_at if portal_finals else float("nan"),
        "twice": sum(1 for count in sent.values() if count > 1),
        "sent": sum(sent.values()),
        "unique_sent": len(sent),
        "lookups": lookups,
        "sweeps": sweeps,
        "bound": bound,
        "states": dict(Counter(messages.values_list("state", flat=True))),
        "not_delivered": messages.exclude(state=MessageState.DELIVERED).count(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2, help="baseline + kill runs, alternating")
    parser.add_argument("--idgtl-timeout", type=float, default=10.0, help="IDGTL_TIMEOUT of the workers (s)")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes (Procfile: 2)")
    parser.add_argument("--gunicorn-workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8, help="threads of the fake portal posting the burst")
    parser.add_argument("--deliver-after", type=float, default=1.0, help="seconds for each i-dgtl step")
    parser.add_argument("--extra-wait", type=float, default=60.0, help="how long past the bound to wait")
    args = parser.parse_args()

    bench_environment(queue=QUEUE)
    os.environ["IDGTL_TIMEOUT"] = str(args.idgtl_timeout)  # the workers' (and this process's: the lease printed)
    _db, broker_url = setup_django(QUEUE)
    TimedBitrix24, TimedIdgtl = timed_fakes()
    fake_b24 = TimedBitrix24(enforce_rate_limit=True).start()
    fake_idgtl = TimedIdgtl(auto_deliver_after=args.deliver_after, callback_threads=4).start()
    fake_idgtl.allowed_sender_names.add("Bench")
    port = free_port()
    base_url = f"http://localhost:{port}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": PROCESS_SETTINGS,
        "PUBLIC_BASE_URL": base_url,
        "B24_OAUTH_URL": fake_b24.oauth_url,
        "IDGTL_API_URL": fake_idgtl.url,
        "IDGTL_MESSAGES_TOKEN": fake_idgtl.messages_key,
        "LOG_FORMAT": "text",
    }
    processes = Processes(Path(tempfile.mkdtemp(prefix="bench-recovery-")), env)
    runs = []
    try:
        from django.conf import settings

        settings.B24_OAUTH_URL = fake_b24.oauth_url
        forget_scheduling_keys(broker_url)
        retire_old_rows()
        point_default_account_at(fake_idgtl)
        processes.gunicorn(port, args.gunicorn_workers)
        beat = processes.beat()
        for _n_round in range(args.rounds):
            for mode in ("baseline", "kill"):
                run = one_run(mode, len(runs) + 1, args, fake_b24, fake_idgtl, processes, base_url, beat)
                runs.append(run)
                print_run(run)
    finally:
        processes.stop_all()
        fake_idgtl.stop()
        fake_b24.stop()
        forget_queue(broker_url, QUEUE)

    from django.conf import settings

    print(
        f"\nIDGTL_TIMEOUT {args.idgtl_timeout:g} s for the workers (shortened; production 70 s); send lease "
        f"{settings.MESSAGES_SEND_LEASE:g} s (connect {settings.IDGTL_CONNECT_TIMEOUT:g} + read "
        f"{settings.IDGTL_TIMEOUT:g} + margin {settings.MESSAGES_SEND_LEASE_MARGIN:g}); "
        "beat sweep messages-send-waiting every 15 s; bound IDGTL_TIMEOUT + 60 = "
        f"{args.idgtl_timeout + 60:g} s; process logs in {processes.log_dir}"
    )
    base = [r for r in runs if r["mode"] == "baseline"]
    kill = [r for r in runs if r["mode"] == "kill"]
    for b, k in zip(base, kill, strict=False):
        print(
            f"kill {k['last_here']:.1f} s vs baseline {b['last_here']:.1f} s to the last final in b24sms: "
            f"+{k['last_here'] - b['last_here']:.1f} s; "
            f"at the portal {k['last_portal']:.1f} vs {b['last_portal']:.1f} s "
            f"(+{k['last_portal'] - b['last_portal']:.1f} s); bound {k['bound']:g} s: "
            f"{'within' if k['last_here'] <= k['bound'] else 'EXCEEDED'}"
        )
    failed = any(
        r["twice"] or r["final_here"] != r["messages"] or r["final_portal"] != r["messages"] or r["refused"]
        for r in runs
    ) or any(r["last_here"] > r["bound"] for r in kill)
    if failed:
        sys.exit(1)


def print_run(run: dict) -> None:
    print(
        f"{run['mode']:>8}: {run['messages']} SMS stored in {run['intake']:.1f} s (load {run['load']}); at the kill "
        f"point {run['held_posts']} POST /message held with {run['in_held']} messages, states {run['states_at_kill']}"
        + (f"; new worker ready in {run['restart']:.1f} s" if run["restart"] is not None else "")
    )
    print(
        f"          last final in b24sms {run['last_here']:.1f} s after the kill point, at the portal "
        f"{run['last_portal']:.1f} s; final {run['final_here']}/{run['messages']} here, {run['final_portal']} at the "
        f"portal; sent to i-dgtl {run['sent']} times for {run['unique_sent']} messages, twice: {run['twice']}; "
        f"GET /message lookups {run['lookups']}; sweeps at +{', +'.join(f'{s:.1f}' for s in run['sweeps'])} s; "
        f"states {run['states']}",
        flush=True,
    )


if __name__ == "__main__":
    main()
