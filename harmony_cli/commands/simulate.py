"""``harmony simulate-annotators``: the command line of :mod:`harmony_cli.study.simulate`."""
from __future__ import annotations

from typing import Optional

import typer

from ..store import Store, StoreError
from ..study.simulate import MAX_ANNOTATORS, check_annotators, simulate
from .options import DbOption


def command(
    study: Optional[str] = typer.Option(None, help="Study to answer (default: the newest)."),
    annotators: int = typer.Option(5, help=f"How many simulated annotators (1 to {MAX_ANNOTATORS})."),
    preference: float = typer.Option(0.7, help="Probability a decisive answer prefers the fine-tuned map "
                                               "(0.5: the metric is imperceptible)."),
    neither: float = typer.Option(0.25, help="Probability of answering Neither."),
    noise: float = typer.Option(0.1, help="Probability of an inattentive, uniformly random answer."),
    gain_weight: float = typer.Option(1.0, help="How strongly a larger metric gain (standardized within its cell) "
                                                "raises the preference."),
    annotator_spread: float = typer.Option(0.0, help="How much annotators differ in preference: SD of each one's "
                                                     "shift on the logit scale (0: exchangeable annotators)."),
    neither_spread: float = typer.Option(0.0, help="How much annotators differ in their Neither rate: SD on the "
                                                   "logit scale."),
    seed: int = typer.Option(0, help="Random seed."),
    db: DbOption = None,
) -> None:
    """Answer a study with simulated annotators (marked simulated; never mixed with real labels)."""
    from ..console import output_console

    rprint = output_console().print  # whole lines in a log file
    check_annotators(annotators)  # before the store is opened
    store = Store.open(db, create=False)
    try:
        if study is None:
            studies = store.studies()
            if not studies:
                raise StoreError(f"{store.url} has no study yet: run `harmony build-dataset` first")
            study = studies[-1].name
        # one transaction: a full or read-only store is one line from the store, and nothing is written
        result = simulate(store, study, annotators, preference, neither, noise, gain_weight, seed,
                          annotator_spread=annotator_spread, neither_spread=neither_spread)
    finally:
        store.close()
    rprint(f"{annotators} simulated annotators answered study [bold]{study}[/]: {result.added} labels added, "
           f"{result.kept} kept (preference {preference}, neither {neither}, noise {noise}, annotator spread "
           f"{annotator_spread}, neither spread {neither_spread})")
    if result.undirected_metrics:
        rprint(f"note: the study records no direction for {', '.join(result.undirected_metrics)}: "
               f"counted as higher-is-better")
