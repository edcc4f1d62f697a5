"""README promises of `harmony analyze`: roll-ups per metric, backbone and method, per-annotator
shares, and "the newest study" by default, checked against an independent pandas / scipy /
statsmodels computation on the store's labels (never against the analysis code itself)."""
from __future__ import annotations

import io
import json
import sys
from contextlib import closing, redirect_stderr, redirect_stdout
from itertools import product

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.stats.multitest import multipletests

from harmony_cli.store import Store

METRICS, BACKBONES, ATTRIBUTIONS = ("rma", "ris"), ("tiny", "resnet18"), ("gradcam", "guided_backprop")
EXAMPLES_PER_CELL = 12
CHOICES = ("original", "neither", "finetuned")


def run_harmony(*args: str) -> str:
    """`harmony ARGS` through the console entry harmony_cli.main:main, in this process; its output."""
    from harmony_cli.main import main

    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, redirect_stdout(out), redirect_stderr(out):
        mp.setattr(sys, "argv", ["harmony", *args])
        mp.setattr(sys, "stdin", io.StringIO(""))
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, out.getvalue()
    return out.getvalue()


def build_study(db: str, name: str) -> None:
    with closing(Store.open(db)) as store:
        study = store.get_or_create_study(name)
        store.add_examples(study.id, [
            dict(dataset="synthetic", metric=m, backbone=b, attribution=a, source_key=str(i), class_name="c")
            for m, b, a in product(METRICS, BACKBONES, ATTRIBUTIONS) for i in range(EXAMPLES_PER_CELL)])


@pytest.fixture(scope="module")
def report_and_labels(tmp_path_factory) -> tuple[dict, "pd.DataFrame"]:
    """(report.json, the store's labels) of a simulated 8-cell study, analyzed by the CLI."""
    tmp = tmp_path_factory.mktemp("report")
    db = f"sqlite:///{tmp / 'h.db'}"
    build_study(db, "older")
    build_study(db, "newest")
    for study in ("older", "newest"):
        run_harmony("simulate-annotators", "--study", study, "--db", db, "--annotators", "4",
                    "--preference", "0.7", "--neither", "0.3", "--noise", "0.2", "--seed", "5")
    run_harmony("analyze", "--db", db, "--out", str(tmp / "out"))  # no --study: the newest
    with closing(Store.open(db)) as store:
        labels = store.labels_frame("newest")
    return json.loads((tmp / "out" / "report.json").read_text()), labels


def test_analysis_defaults_to_the_newest_study(report_and_labels):
    report, labels = report_and_labels
    assert report["study"] == "newest"
    assert report["n_labels"] == len(labels) == 4 * EXAMPLES_PER_CELL * 8


@pytest.mark.parametrize("field", ["metric", "backbone", "attribution"])
def test_rollups_match_an_independent_count(report_and_labels, field):
    report, labels = report_and_labels
    rows = {row[field]: row for row in report["rollups"][field]}
    counts = labels.groupby(field)["choice"].value_counts().unstack(fill_value=0).reindex(columns=CHOICES,
                                                                                          fill_value=0)
    assert sorted(rows) == sorted(counts.index)
    p_values = []
    for name, count in counts.iterrows():
        row, n = rows[name], int(count.sum())
        assert row["n_labels"] == n
        assert row["n_examples"] == labels.loc[labels[field] == name, "example_id"].nunique()
        assert row["n_cells"] == 4  # the other two fields' 2 x 2 cells
        assert row["counts"] == {c: int(count[c]) for c in CHOICES}
        for c in CHOICES:
            assert row["shares"][c] == pytest.approx(count[c] / n)
        # the pooled figures, clustered by example as a cell's: statsmodels' cluster-robust OLS of
        # per-label indicators on a constant (decisive: not Neither; net: +1 fine-tuned, -1 original)
        group = labels[labels[field] == name]
        decisive = (group["choice"] != "neither").to_numpy(float)
        net = group["choice"].map({"finetuned": 1.0, "original": -1.0, "neither": 0.0}).to_numpy()
        clusters = group["example_id"].to_numpy()
        assert row["decisive_rate"] == pytest.approx(decisive.mean())
        assert row["net_preference"] == pytest.approx(net.mean())
        fit = sm.OLS(net, np.ones(len(net))).fit(cov_type="cluster", cov_kwds={"groups": clusters}, use_t=True)
        assert row["p_value"] == pytest.approx(fit.pvalues[0], rel=1e-6)
        p_values.append((row["p_value_holm"], row["p_value"]))
    holm = multipletests([p for _, p in p_values], method="holm")[1]
    assert [h for h, _ in p_values] == pytest.approx(list(holm))


def test_per_annotator_shares_match_an_independent_count(report_and_labels):
    report, labels = report_and_labels
    rows = {row["annotator"]: row for row in report["annotators"]}
    assert sorted(rows) == sorted(labels["annotator"].unique())
    for name, own in labels.groupby("annotator"):
        row, n = rows[name], len(own)
        assert row["n_labels"] == n and row["simulated"] is True
        assert row["n_cells"] == own[["metric", "backbone", "attribution"]].drop_duplicates().shape[0]
        for c in CHOICES:
            assert row["counts"][c] == int((own["choice"] == c).sum())
            assert row["shares"][c] == pytest.approx((own["choice"] == c).mean())
        decisive = own[own["choice"] != "neither"]
        assert row["decisive_finetuned_share"] == pytest.approx((decisive["choice"] == "finetuned").mean())
        # position bias: decisive labels with a side, and how many chose the map shown on the left
        sided = decisive[decisive["left_map"].notna()]
        assert row["position"]["n_decisive_with_side"] == len(sided)
        assert row["position"]["chose_left"] == int((sided["choice"] == sided["left_map"]).sum())
    assert np.isclose(sum(r["n_labels"] for r in rows.values()), len(labels))
