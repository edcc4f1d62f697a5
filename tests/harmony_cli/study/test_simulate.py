"""simulate-annotators: answers follow each metric's recorded direction; one transaction; reruns add nothing."""
from __future__ import annotations

from sqlalchemy import select

from harmony_cli.store import Annotator, Example, Label, Store
from harmony_cli.study.simulate import simulate

CELL = dict(dataset="synthetic", backbone="tiny", attribution="gradcam")


def study_with_scores(db_url: str, directions: dict) -> Store:
    """Study "s": cells rma and ris, 10 examples each; even examples' fine-tuned score is 0.5 above the
    original's, odd ones 0.5 below. The study records ``directions`` as its metrics' directions."""
    store = Store.open(db_url)
    study = store.get_or_create_study("s", config={"higher_is_better": directions}, image_dir="/nowhere")
    rows = [dict(CELL, metric=metric, source_key=str(k), class_name="c", image_path=f"{metric}{k}.png",
                 original_map_path=f"{metric}{k}o.png", finetuned_map_path=f"{metric}{k}f.png",
                 original_score=0.25, finetuned_score=0.75 if k % 2 == 0 else -0.25)
            for metric in ("rma", "ris") for k in range(10)]
    store.add_examples(study.id, rows)
    return store


def choices(store: Store) -> dict[tuple[str, str], set[str]]:
    """(metric, source_key) -> the set of choices the simulated annotators made."""
    query = select(Example.metric, Example.source_key, Label.choice).join(Label, Label.example_id == Example.id)
    out: dict[tuple[str, str], set[str]] = {}
    with store.read() as session:
        for metric, key, choice in session.execute(query):
            out.setdefault((metric, key), set()).add(choice)
    return out


def test_simulated_preference_follows_each_metrics_recorded_direction(sqlite_url):
    store = study_with_scores(sqlite_url, {"rma": True, "ris": False})
    # no noise, no Neither, an indifferent base preference: the metric gain alone decides, almost surely
    result = simulate(store, "s", n_annotators=3, preference=0.5, neither=0.0, noise=0.0, gain_weight=30.0)
    assert (result.added, result.kept, result.undirected_metrics) == (60, 0, [])
    # rma: higher is better, so the fine-tuned map wins where its score rose (even examples);
    # ris: lower is better, so it wins where its score fell (odd examples)
    expected = {("rma", str(k)): {"finetuned" if k % 2 == 0 else "original"} for k in range(10)}
    expected |= {("ris", str(k)): {"original" if k % 2 == 0 else "finetuned"} for k in range(10)}
    assert choices(store) == expected
    with store.read() as session:
        accounts = list(session.scalars(select(Annotator)))
    assert sorted(a.name for a in accounts) == ["simulated-1", "simulated-2", "simulated-3"]
    assert all(a.simulated and not a.active and a.password_hash is None for a in accounts)
    again = simulate(store, "s", n_annotators=3, preference=0.5, neither=0.0, noise=0.0, gain_weight=30.0, seed=9)
    assert (again.added, again.kept) == (0, 60) and choices(store) == expected  # a rerun keeps what is there
    store.close()


def test_a_metric_without_a_recorded_direction_counts_as_higher_is_better(tmp_path):
    store = study_with_scores(f"sqlite:///{tmp_path / 'h.db'}", {"rma": True})
    result = simulate(store, "s", n_annotators=1, preference=0.5, neither=0.0, noise=0.0, gain_weight=30.0)
    assert result.undirected_metrics == ["ris"]
    assert choices(store)[("ris", "0")] == {"finetuned"}  # its score rose: read as a gain
    store.close()
