"""Run one function in several threads at once (the workers of a concurrency test)."""

import threading


def run_together(work, n: int = 2, *, timeout: float = 30) -> list:
    """Call ``work()`` in ``n`` threads released together; return the results (in finishing order).

    Each thread closes its database connection; any exception in a thread fails the caller.
    """
    from django.db import connection

    results, errors = [], []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def run():
        try:
            barrier.wait()
            result = work()
            with lock:
                results.append(result)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not errors, errors
    assert len(results) == n, "a thread did not finish in time"
    return results


def run_in_processes(work, n: int = 2, *, args: tuple = (), timeout: float = 60) -> list:
    """Call ``work(*args)`` in ``n`` new processes released together; return the results (finishing order).

    Threads share one interpreter and the locks of every library in it: a race between processes
    (two producers creating the same row in a shared file) needs processes. They are spawned, not
    forked, so each starts clean (no database connection or lock inherited from the test), and
    ``work`` must be importable (a module-level function). Any exception in a process fails the caller.
    """
    import multiprocessing
    import queue

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(n)
    outcomes = context.Queue()
    processes = [context.Process(target=_run_released, args=(work, args, barrier, outcomes)) for _ in range(n)]
    for process in processes:
        process.start()
    try:
        collected = [outcomes.get(timeout=timeout) for _ in processes]
    except queue.Empty:
        collected = None
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    assert collected is not None, "a process did not finish in time"
    errors = [detail for kind, detail in collected if kind == "error"]
    assert not errors, "\n".join(errors)
    return [detail for _kind, detail in collected]


def _run_released(work, args, barrier, outcomes):
    import traceback

    try:
        barrier.wait(timeout=60)
        outcomes.put(("ok", work(*args)))
    except BaseException:  # pragma: no cover - reported by the caller
        outcomes.put(("error", traceback.format_exc()))
