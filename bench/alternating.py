"""Comparing configurations on a machine whose speed drifts: alternating runs, median ratios.

A shared 2-core machine speeds up and slows down, over seconds, by more than the few percent a
benchmark here is after. So a configuration's runs alternate with runs of the baseline,
``baseline, other, baseline, other, ..., baseline``, and each run of the other is compared
with the baseline runs on either side of it (their geometric mean): a drift weighs on both
alike, and every run follows a run of the other kind (a run right after one of its own kind
would find the caches warm). A ratio is the median of the runs' ratios, which many short runs
make steady; a figure (what a configuration does at best) is its best run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

Run = dict[str, float]
"""The measures of one run, by name (``p50``, ``rps``...)."""


@dataclass
class Figures:
    """Every run's measures by configuration, and each compared run's ratios to the baseline.
    ``higher_is_better`` says which way each measure goes (latency: no; throughput: yes)."""

    baseline: str
    higher_is_better: Mapping[str, bool]
    runs: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    ratios: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, config: str, run: Run) -> None:
        for key, value in run.items():
            self.runs.setdefault(config, {}).setdefault(key, []).append(value)

    def compare(self, config: str, run: Run, before: Run, after: Run) -> None:
        """``run`` of ``config`` against the baseline runs ``before`` and ``after`` it."""
        for key, value in run.items():
            ratio = value / math.sqrt(before[key] * after[key])
            self.ratios.setdefault(config, {}).setdefault(key, []).append(ratio)

    def figure(self, config: str, key: str) -> float:
        """The best run of ``config``."""
        pick = max if self.higher_is_better[key] else min
        return pick(self.runs[config][key])

    def ratio(self, config: str, key: str) -> float:
        """The median of the runs' ratios of ``config`` to the baseline."""
        return statistics.median(self.ratios[config][key])

    def change(self, config: str, key: str) -> float:
        """:meth:`ratio` less one: + is slower latency or more throughput."""
        return self.ratio(config, key) - 1


async def alternate(
    one: Callable[[str], Awaitable[Run]],
    config: str,
    count: int,
    figures: Figures,
    before_run: Callable[[], Awaitable[None]] | None = None,
) -> Figures:
    """``count`` runs of ``config`` (``one(name)`` makes a run), alternating with ``count + 1``
    of the baseline; each compared with the baseline runs either side of it. ``before_run``
    clears what a run leaves behind, so that the next does not pay for it."""

    async def measured(name: str) -> Run:
        if before_run is not None:
            await before_run()
        run = await one(name)
        figures.add(name, run)
        return run

    before = await measured(figures.baseline)
    for _ in range(count):
        run = await measured(config)
        after = await measured(figures.baseline)
        figures.compare(config, run, before, after)
        before = after
    return figures
