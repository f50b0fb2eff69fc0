"""A changelist paginator whose count costs the same with ten million rows as with none (PostgreSQL).

Django's paginator counts the rows (``COUNT(*)``) to number the pages: over the whole messages table that
reads every row, at every page view, and a filter (a portal and a state) still reads every row it matches.
Here, on PostgreSQL, the planner's estimate of the rows comes first (``EXPLAIN``: no row is read); when it
is above ``EXACT_UP_TO`` it is the count, rounded and shown as "about N rows" (templates/admin/pagination.html
reads ``count_is_estimate``), and nothing is counted; otherwise the rows are few and counted exactly. Other
databases count as Django does.

An estimate is an estimate: a filter the planner misjudges may show "about 12,000 rows" over a few pages of
rows (the pages after the last row are empty), or count more rows than it expected. Counting up to a limit
instead (``SELECT count(*) FROM (… LIMIT n)``) was measured and dropped: the planner takes a bitmap of every
row of the portal and of the state for it (seconds at ten million rows; bench/scale.py, docs/performance.md).
"""

import json
import math

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

EXACT_UP_TO = 10_000


def round_estimate(rows: int) -> int:
    """Two significant digits: an estimate is not exact, and the figure should not claim it is."""
    if rows < 100:
        return rows
    scale = 10 ** (int(math.log10(rows)) - 1)
    return int(round(rows / scale) * scale)


class EstimatedCountPaginator(Paginator):
    exact_up_to = EXACT_UP_TO
    count_is_estimate = False

    def _planner_rows(self, queryset) -> int:
        sql, params = queryset.order_by().query.sql_with_params()
        with connections[queryset.db].cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not hasattr(queryset, "query") or connections[queryset.db].vendor != "postgresql":
            return super().count
        estimate = self._planner_rows(queryset)
        if estimate <= self.exact_up_to:
            return super().count  # few rows expected: counting them is cheap
        self.count_is_estimate = True
        return round_estimate(estimate)
