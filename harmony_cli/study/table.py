"""The table build-dataset prints: one row per cell, how images were drawn in its caption."""
from __future__ import annotations

from rich.table import Table

from .build import BuildOutcome


def summary_table(outcome: BuildOutcome):
    """A rich table: one row per cell (metric / attribution / backbone; the data set in the title)."""
    results = outcome.results
    datasets = sorted({r.cell["dataset"] for r in results})
    images = ("disjoint across cells of the same backbone and attribution (study.disjoint_images=true)"
              if outcome.disjoint_images else "shared across cells (study.disjoint_images=false)")
    table = Table(title=f"study {outcome.name} ({', '.join(datasets)})",
                  caption=f"images: {images}", caption_justify="left")
    for column in ("cell", "examples", "added", "skipped (why)", "original mean", "fine-tuned mean"):
        table.add_column(column, justify="left" if column in ("cell", "skipped (why)") else "right")
    for r in results:
        c = r.cell
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(r.skipped.items())) or "-"
        examples = f"{r.examples}/{r.target}" + (" (test split exhausted)" if r.exhausted else "")
        table.add_row(f"{c['metric']} / {c['attribution']} / {c['backbone']}", examples, str(r.added), skipped,
                      _mean(r.original_mean), _mean(r.finetuned_mean))
    return table


def _mean(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
