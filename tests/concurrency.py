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
