"""Cluster bootstrap over examples of each cell's decisive fine-tuned share (a descriptive figure)."""
from __future__ import annotations

import numpy as np


def cluster_bootstrap_share(finetuned: np.ndarray, decisive: np.ndarray, example_cell: np.ndarray, n_cells: int,
                            resamples: int, confidence: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each cell's decisive fine-tuned share, resampling examples with replacement.

    finetuned, decisive: (E,) fine-tuned and decisive label counts per example; example_cell: (E,).
    Each resample draws a cell's m examples with replacement and takes sum(finetuned) / sum(decisive).
    Two exact ways to draw, whichever is cheaper per cell, both vectorized over resamples: when
    few distinct (finetuned, decisive) patterns K exist (few annotators, many examples), a
    multinomial draw of m over the patterns with their frequencies, O(K) per resample; otherwise
    m uniform example indices, O(m). Cells of the same size share their index draws: each cell's
    interval is a marginal quantity, so correlating the Monte Carlo noise across cells changes
    none of them, and it halves the work. Resamples without a decisive label are left out.
    Returns (low, high), each (C,), NaN where undefined.
    """
    low = np.full(n_cells, np.nan)
    high = np.full(n_cells, np.nan)
    if resamples <= 0 or len(finetuned) == 0:
        return low, high
    rng = np.random.default_rng(seed)
    order = np.argsort(example_cell, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(example_cell, minlength=n_cells))])
    packed, patterns, by_size = {}, {}, {}
    for c in range(n_cells):
        members = order[bounds[c]:bounds[c + 1]]
        if len(members) == 0 or decisive[members].sum() == 0:
            continue
        # Both counts in one int64 (decisive in the high half): one gather and one sum serve both.
        packed[c] = (decisive[members].astype(np.int64) << 32) | finetuned[members].astype(np.int64)
        values, freq = np.unique(packed[c], return_counts=True)
        if len(values) * 16 < len(members):  # a binomial draw costs about 16 index draws and gathers
            patterns[c] = (values, freq / len(members))
        else:
            by_size.setdefault(len(members), []).append(c)
    sums = {c: np.empty(resamples, dtype=np.int64) for c in packed}
    for c, (values, prob) in patterns.items():
        chunk = max(1, 4_000_000 // len(values))
        for start in range(0, resamples, chunk):
            b = min(chunk, resamples - start)
            sums[c][start:start + b] = rng.multinomial(len(packed[c]), prob, size=b) @ values
    for m, cells in by_size.items():
        chunk = max(1, 4_000_000 // m)
        for start in range(0, resamples, chunk):
            b = min(chunk, resamples - start)
            index = rng.integers(0, m, size=(b, m), dtype=np.uint32)
            for c in cells:
                sums[c][start:start + b] = packed[c][index].sum(1)
    tail = (1 - confidence) / 2
    for c, total in sums.items():
        dec_sum, fin_sum = total >> 32, total & 0xFFFFFFFF
        shares = fin_sum[dec_sum > 0] / dec_sum[dec_sum > 0]
        low[c], high[c] = np.quantile(shares, [tail, 1 - tail])
    return low, high

