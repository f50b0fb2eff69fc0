"""Keep one process running: start it again whenever it exits, until told to stop.

    python -I b24sms/supervise.py --name worker -- python -m celery -A b24sms worker

`make run` (run_backoffice) runs the Celery worker and beat under it. Its process manager, honcho,
stops every process when one exits and restarts none, and a worker does exit on its own: kombu's
``'NoneType' object has no attribute 'hostname'`` after a Redis restart (docs: shared pitfalls). In
production the container's ``restart: unless-stopped`` does this job (docker-compose.yml).

* The process exits, whatever its code (a crash, ``kill -9``): it is started again after a pause that
  doubles from ``--restart-delay`` up to ``--max-delay`` while it keeps exiting early.
* SIGTERM or SIGINT to the supervisor (honcho's stop, Ctrl-C): the process gets SIGTERM (a warm
  shutdown for Celery) and is not started again; the supervisor exits with its code.
* A process that exits within ``--early-exit`` seconds of starting ``--give-up-after`` times in a row
  has a problem a restart does not fix (a setting, a missing migration): the supervisor exits with
  its code, so honcho stops everything and the error stays on screen.

It uses the standard library only and is run by its path (``-I`` keeps b24sms/ off sys.path): it
loads neither Django nor the project, so a bad setting fails the supervised process, not this one.
"""

import argparse
import signal
import subprocess
import sys
import time


def _say(name: str, text: str) -> None:
    print(f"[supervise] {name}: {text}", flush=True)


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode  # killed by signal N: 128 + N, as a shell says


def supervise(
    command: list[str],
    *,
    name: str,
    restart_delay: float = 1.0,
    max_delay: float = 30.0,
    early_exit: float = 10.0,
    give_up_after: int = 5,
) -> int:
    """Run ``command`` until a stop signal, starting it again each time it exits; return the exit code."""
    stopping = False
    child: subprocess.Popen | None = None

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    delay, early_exits = restart_delay, 0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(command)
        _say(name, f"started (pid {child.pid})")
        if stopping:  # the signal came while it was starting
            child.send_signal(signal.SIGTERM)
        code = _exit_code(child.wait())
        if stopping:
            _say(name, f"stopped (exit code {code})")
            return code
        ran = time.monotonic() - started
        if ran >= early_exit:
            delay, early_exits = restart_delay, 0
        else:
            early_exits += 1
            if early_exits >= give_up_after:
                _say(
                    name,
                    f"exited {early_exits} times within {early_exit:g}s of starting (last exit code "
                    f"{code}): not starting it again",
                )
                return code or 1
        _say(name, f"exited (exit code {code}) after {ran:.1f}s; starting it again in {delay:g}s")
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, delay))
        if stopping:
            return code
        delay = min(delay * 2, max_delay)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="supervise.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="What to call the process in messages (e.g. worker).")
    parser.add_argument("--restart-delay", type=float, default=1.0, help="Seconds before the first restart.")
    parser.add_argument("--max-delay", type=float, default=30.0, help="Longest pause between restarts (s).")
    parser.add_argument(
        "--early-exit",
        type=float,
        default=10.0,
        help="An exit this many seconds or less after starting counts as early.",
    )
    parser.add_argument("--give-up-after", type=int, default=5, help="Early exits in a row before giving up.")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command and its arguments.")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    return supervise(
        command,
        name=args.name,
        restart_delay=args.restart_delay,
        max_delay=args.max_delay,
        early_exit=args.early_exit,
        give_up_after=args.give_up_after,
    )


if __name__ == "__main__":
    sys.exit(main())
