"""``harmony replay``: where would a sequential design have stopped each cell of a study, and would it agree?

Replays a study's labels in the order they were given under a sequential design (harmony_cli/analysis/
replay.py) and prints per cell the labels used at the stop, the verdict there and the full-data verdict;
writes replay.csv, replay.json and replay.png (+ .pdf) into a folder.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..cells import cell_text
from .analyze import VERDICT_COLORS, default_out_dir
from .options import DbOption

DIRECTION_STYLES = {"same": "", "differs": "italic", "opposite": "bold red"}


def replay_table(result: dict):
    """The cells of a replay as a rich Table (one line per cell)."""
    from rich.table import Table
    from rich.text import Text

    design = result["design"]
    several = len({r["dataset"] for r in result["cells"]}) > 1
    table = Table(title=f"{result['study']}: {result['n_labels']} {result['label_source']} labels replayed in the "
                        f"order given; at most {design['max_labels']} labels per cell, a look every "
                        f"{design['look_every']} ({design['n_looks']} looks): {design['origin']}. Rule: "
                        f"{result['rule']}; Bonferroni over {result['family']} cells",
                  title_justify="left", header_style="bold", caption_justify="left",
                  caption="stop: labels used at the look that decided (all of them when none did); direction: "
                          "of the verdict at the stop vs the full data (aligned +, misaligned -, else none): same, "
                          "differs (one has none) or opposite; saved: labels a decided cell would not have needed")
    table.add_column("cell", no_wrap=True)
    for name in ("labels", "stop", "look", "verdict at stop", "full-data verdict", "direction", "saved"):
        table.add_column(name, justify="left" if "verdict" in name or name == "direction" else "right", no_wrap=True)
    for r in result["cells"]:
        table.add_row(cell_text(r, several), str(r["full"]), str(r["labels"]), str(r["look"]),
                      *(Text(v, style=VERDICT_COLORS.get(v, "")) for v in (r["verdict"], r["full_verdict"])),
                      Text(r["direction"], style=DIRECTION_STYLES[r["direction"]]), str(r["saved"]))
    return table


def total_line(result: dict) -> str:
    return (f"saved {result['saved_labels']} of {result['full_labels']} labels ({result['saved_share']:.0%}); "
            f"{result['decided_cells']} of {len(result['cells'])} cells decided; "
            f"{result['contradicting_cells']} contradict the full-data verdict in direction")


def command(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="Hydra overrides of the rule, as harmony analyze takes them, e.g. analysis.settings.alpha=0.01."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: the newest study)."),
    look_every: Optional[int] = typer.Option(
        None, "--look-every", help="A fixed study: labels of a cell between two looks (default: conf/study's "
                                   "sequential.look_every). A sequential study uses its recorded design."),
    max_labels: Optional[int] = typer.Option(
        None, "--max-labels", help="A fixed study: labels per cell at most, the last look (default: the planned "
                                   "examples x labels per example; an imported study: its largest cell's labels)."),
    db: DbOption = None,
    out: Optional[Path] = typer.Option(None, "--out", help="Folder of replay.csv/json/png (default: "
                                                           "outputs/replay/<study>-<time>/)."),
    simulated: Optional[bool] = typer.Option(
        None, "--simulated/--real", help="Replay the simulated or the real annotators' labels (never both). "
                                         "Default: the real labels when the study has any, else the simulated ones."),
    exclude_annotator: Optional[list[str]] = typer.Option(
        None, "--exclude-annotator", help="Replay without this annotator's labels (repeat for several)."),
    force: bool = typer.Option(False, "--force", help="Replace the replay files of an earlier run in --out."),
) -> None:
    """Replay a study's labels in the order given under a sequential design: where each cell would have stopped,
    its verdict there against the full-data verdict, and the labels saved."""
    from hydra.utils import instantiate

    from ..analysis.replay import REPLAY_FILES, check_design_numbers, replay_figure, replay_frame, replay_study
    from ..console import output_console
    from ..hydra_app import compose_config
    from ..outputs import check_folder_target, store_files, write_folder
    from ..store import Store

    check_design_numbers(look_every, max_labels)
    console = output_console()
    cfg = compose_config(overrides or [], task="replay")
    # the rule's overrides, if any (a sequential study replays under the rule it recorded)
    settings = instantiate(cfg.analysis.settings) if any(o.lstrip("+~").startswith("analysis.")
                                                         for o in overrides or []) else None
    protected = store_files(db or cfg.db_url)
    if out is not None:  # before the labels are read
        check_folder_target(out, REPLAY_FILES, "--out", force, protected)
    store = Store.open(db or cfg.db_url, create=False)
    try:
        with _look_progress(console) as progress:
            result = replay_study(store, study, settings, simulated, exclude_annotator or [], look_every, max_labels,
                                  progress=progress)
    finally:
        store.close()
    target = out or default_out_dir(Path(cfg.paths.outputs) / "replay", result["study"])
    check_folder_target(target, REPLAY_FILES, "--out", force, protected)

    def write(staging: Path) -> None:
        replay_frame(result).to_csv(staging / "replay.csv", index=False)
        (staging / "replay.json").write_text(json.dumps(result, indent=2))
        replay_figure(result, staging / "replay.png")

    write_folder(target, write, "--out", force)
    console.print(replay_table(result))
    console.print(total_line(result), highlight=False)
    console.print(f"wrote [bold]{target}[/] ({', '.join(REPLAY_FILES)})", highlight=False)


class _look_progress:
    """A progress bar of the looks replayed, as the callable ``replay_study`` reports (done, total) to."""

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

        from ..console import LoggedProgress

        self.bar = LoggedProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=console, transient=True)
        self.task = None

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def __call__(self, done: int, total: int) -> None:
        if self.task is None:
            self.task = self.bar.add_task("replaying looks", total=total)
        self.bar.advance(self.task, done - self.bar.tasks[0].completed)
