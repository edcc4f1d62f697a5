"""``harmony power --design sequential``: its table and its folder (power.csv, power.json, power.png + .pdf)."""
from __future__ import annotations

import json
from pathlib import Path

from ..analysis.verdict import VERDICTS


def _pct(share: float) -> str:
    return f"{share:.0%}"


def sequential_table(rows: list[dict], target: str, title: str):
    """One line per grid point: labels per cell fixed vs expected under the sequential design, P(target) under each
    with its Monte Carlo interval, and every verdict's probability as fixed / sequential."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold", caption_justify="left",
                  caption="labels: per cell, fixed vs the sequential design's expected number [95% Monte Carlo "
                          "interval]; P(verdict): fixed / sequential on the same simulated studies; same: share of "
                          "studies where both designs reach the same verdict")
    for name in ("examples", "annotators", "labels fixed", "labels sequential", f"P({target}) fixed",
                 f"P({target}) sequential", *VERDICTS, "same"):
        table.add_column(name, justify="right", no_wrap=True)
    for r in rows:
        low, high = r["expected_labels_interval"]
        table.add_row(str(r["examples"]), str(r["annotators"]), str(r["labels"]),
                      f"{r['expected_labels']:.0f} [{low:.0f}, {high:.0f}]",
                      *(f"{_pct(r[f'{d}_{target}'])} [{_pct(r[f'{d}_{target}_interval'][0])}, "
                        f"{_pct(r[f'{d}_{target}_interval'][1])}]" for d in ("fixed", "sequential")),
                      *(f"{_pct(r[f'fixed_{v}'])} / {_pct(r[f'sequential_{v}'])}" for v in VERDICTS),
                      _pct(r["same_verdict"]))
    return table


def write_sequential_power(folder: Path, rows: list[dict], model, family: int, target: str, simulations: int,
                           settings, look_every: int, console, force: bool = False) -> None:
    """power.csv, power.json and the figure in ``folder`` (all or none), and the table on the console."""
    import pandas as pd

    from ..analysis.power import flat_rows
    from ..analysis.power_sequential import sequential_figure
    from ..outputs import write_folder

    title = (f"Sequential (a look every {look_every} labels, at most the fixed design's) vs fixed design: "
             f"{model.describe()}; {simulations} simulations, a family of {family} cells; rule: {settings.describe()}")

    def write(staging: Path) -> None:
        pd.DataFrame(flat_rows(rows)).to_csv(staging / "power.csv", index=False)
        (staging / "power.json").write_text(json.dumps({"design": "sequential", "look_every": look_every,
                                                        "model": model.to_dict(), "family": family, "target": target,
                                                        "simulations": simulations, "settings": settings.to_dict(),
                                                        "rows": rows}, indent=2))
        sequential_figure(rows, target, f"fixed vs sequential (a look every {look_every}): Neither "
                                        f"{model.neither:.0%}, preference {model.preference:.0%}, rho "
                                        f"{model.correlation:.2f}, {family} cells", staging / "power.png")

    write_folder(folder, write, "--out", force)
    console.print(sequential_table(rows, target, title))
    saved = [1 - r["expected_labels"] / r["labels"] for r in rows]
    console.print(f"the sequential design uses {min(saved):.0%} to {max(saved):.0%} fewer labels per cell on average "
                  f"than the fixed one on this grid", highlight=False)
    console.print(f"wrote [bold]{folder}[/] (power.csv, power.json, power.png, power.pdf)", highlight=False)
