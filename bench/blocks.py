"""Comparing configurations on a machine whose speed drifts: interleaved blocks, median ratios.

A shared 2-core machine speeds up and slows down by more than the few percent a benchmark here
is after, over seconds. So configurations are compared in blocks of four runs, ``baseline,
other, other, baseline``: a drift during a block weighs on both alike. Each block gives a ratio
(the other's best run in the block to the baseline's); a change is the median of the blocks'
ratios, which many short blocks make steady. A figure (what a configuration does at best) is
its best run.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

Run = dict[str, float]
"""The measures of one run, by name (``p50``, ``rps``...)."""


@dataclass
class Figures:
    """Per configuration and measure, the best run of each block; per block, the ratio of the
    configuration's best to the baseline's. ``higher_is_better`` says which way each measure
    goes (latency: no; throughput: yes)."""

    baseline: str
    higher_is_better: Mapping[str, bool]
    best: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    ratios: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_block(self, block: Mapping[str, list[Run]]) -> None:
        bests = {config: self._best(runs) for config, runs in block.items()}
        for config, values in bests.items():
            for key, value in values.items():
                self.best.setdefault(config, {}).setdefault(key, []).append(value)
                if config != self.baseline:
                    ratio = value / bests[self.baseline][key]
                    self.ratios.setdefault(config, {}).setdefault(key, []).append(ratio)

    def figure(self, config: str, key: str) -> float:
        """The best run of ``config``."""
        return self._pick(key)(self.best[config][key])

    def ratio(self, config: str, key: str) -> float:
        """The median of the blocks' ratios of ``config`` to the baseline."""
        return statistics.median(self.ratios[config][key])

    def change(self, config: str, key: str) -> float:
        """:meth:`ratio` less one: + is slower latency or more throughput."""
        return self.ratio(config, key) - 1

    def _pick(self, key: str) -> Callable[[list[float]], float]:
        return max if self.higher_is_better[key] else min

    def _best(self, runs: list[Run]) -> Run:
        return {key: self._pick(key)([run[key] for run in runs]) for key in runs[0]}


async def interleave(
    one: Callable[[str], Awaitable[Run]],
    blocks: Mapping[str, int],
    figures: Figures,
    before_run: Callable[[], Awaitable[None]] | None = None,
    after_block: Callable[[], Awaitable[None]] | None = None,
) -> Figures:
    """``blocks[config]`` blocks of runs ``baseline, config, config, baseline`` (``one(name)``
    makes a run) for each configuration, the blocks of each spread evenly among the others'.
    ``before_run`` clears what a run leaves behind, so that the next does not pay for it."""
    order = sorted(((i + 0.5) / count, config) for config, count in blocks.items() for i in range(count))
    baseline = figures.baseline
    for _, config in order:
        block: dict[str, list[Run]] = {baseline: [], config: []}
        for name in (baseline, config, config, baseline):
            if before_run is not None:
                await before_run()
            block[name].append(await one(name))
        figures.add_block(block)
        if after_block is not None:
            await after_block()
    return figures
