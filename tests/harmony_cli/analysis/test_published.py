"""harmony analyze on the published study (../shared/data/harmony_study_2024.sqlite3): the figures against the
libraries computed straight from the original app's tables, and the verdicts of the pre-registered rule on
cells whose answer is unambiguous. Skipped, with the reason, where the database is absent."""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harmony_cli.analysis import AnalysisSettings, analyze_labels, to_json

from tests.conftest import LEGACY_DB


@pytest.fixture(scope="module")
def legacy_db() -> Path:
    """The published study's database: beside the checkout (conftest's LEGACY_DB) or at HARMONY_LEGACY_DB."""
    for path in (LEGACY_DB, Path(os.environ.get("HARMONY_LEGACY_DB", "") or LEGACY_DB)):
        if path.is_file():
            return path
    pytest.skip(f"{LEGACY_DB} is absent (and HARMONY_LEGACY_DB names no file): the published study's database "
                f"lives beside the project in CI only")


def legacy_labels(path) -> pd.DataFrame:
    """The published study's labels straight from the original app's tables (duplicates: the last row)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
        frame = pd.read_sql(
            """SELECT l.id, l.example_id, d.name AS dataset, x.name AS metric, m.name AS backbone,
                      r.name AS attribution, u.username AS annotator, l.choice
               FROM relevavance_label l JOIN relevavance_example e ON e.id = l.example_id
               JOIN relevavance_dataset d ON d.id = e.dataset_id JOIN relevavance_experiment x ON x.id = e.experiment_id
               JOIN relevavance_cnnmodel m ON m.id = e.cnn_model_id
               JOIN relevavance_relevancymethod r ON r.id = e.relevancy_method_id
               JOIN auth_user u ON u.id = l.user_id ORDER BY l.id""", con)
    frame = frame.drop_duplicates(["example_id", "annotator"], keep="last")
    return frame.assign(choice=frame.choice.replace({"learn": "finetuned"}))


def expected_cells(frame: pd.DataFrame) -> dict[tuple, dict]:
    """Counts, Fleiss' kappa and Krippendorff's alpha per cell, computed with the libraries directly."""
    import krippendorff
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    out = {}
    for key, part in frame.groupby(["dataset", "metric", "backbone", "attribution"]):
        codes = part.pivot(index="example_id", columns="annotator", values="choice").replace(
            {"original": 0, "neither": 1, "finetuned": 2}).astype(int).to_numpy()
        table, _ = aggregate_raters(codes, n_cat=3)
        one_value = len(np.unique(codes)) == 1
        out[key] = {"n_examples": codes.shape[0], "n_annotators": codes.shape[1], "n_labels": codes.size,
                    "counts": {k: int((part.choice == k).sum()) for k in ("original", "neither", "finetuned")},
                    "fleiss_kappa": None if one_value else fleiss_kappa(table),
                    "krippendorff_alpha": None if one_value else krippendorff.alpha(
                        reliability_data=codes.T.astype(float), level_of_measurement="nominal")}
    return out


def check_published(report: dict, expected: dict, name_of=lambda field, value: value):
    assert len(report["cells"]) == 30
    seen = set()
    for key, want in expected.items():
        mapped = tuple(name_of(f, v) for f, v in zip(("dataset", "metric", "backbone", "attribution"), key))
        got = [c for c in report["cells"] if (c["dataset"], c["metric"], c["backbone"], c["attribution"]) == mapped]
        assert len(got) == 1, mapped
        cell = got[0]
        seen.add(mapped)
        assert (cell["n_examples"], cell["n_annotators"], cell["n_labels"]) == (200, 5, 1000)
        assert cell["counts"] == want["counts"]
        for stat in ("fleiss_kappa", "krippendorff_alpha"):
            if want[stat] is None:
                assert cell[stat] is None, (mapped, stat)
            else:
                assert cell[stat] == pytest.approx(want[stat], abs=1e-9), (mapped, stat)
    assert len(seen) == 30


@pytest.fixture(scope="module")
def published(legacy_db):
    frame = legacy_labels(legacy_db)
    return frame, expected_cells(frame)


def test_published_study_from_legacy_tables(published):
    frame, expected = published
    report = analyze_labels(frame, AnalysisSettings.defaults(bootstrap_resamples=200))
    check_published(report, expected)
    undefined = [c for c in report["cells"] if c["fleiss_kappa"] is None]
    assert [(c["metric"], c["backbone"], c["attribution"]) for c in undefined] == [
        ("ISLearnableMetric", "ResNet", "GradCamAttributor")]
    assert undefined[0]["counts"]["neither"] == 1000 and undefined[0]["verdict"] == "imperceptible"
    assert any("every label is 'neither'" in n for n in undefined[0]["notes"])
    json.loads(to_json(report))
    assert report["position_bias"]["left_share"] is None  # the original app recorded no sides


@pytest.fixture(scope="module")
def published_report(legacy_db, tmp_path_factory):
    """harmony import-legacy into a tmp store, then harmony analyze: (report.json, legacy labels, name map)."""
    from typer.testing import CliRunner

    from harmony_cli.main import app
    from harmony_cli.store import Store
    from harmony_cli.study import import_legacy as legacy

    tmp = tmp_path_factory.mktemp("published")
    url = f"sqlite:///{tmp / 'harmony.db'}"
    store = Store.open(url)
    legacy.import_legacy(store, legacy_db, image_dir=tmp / "images")
    store.close()
    result = CliRunner().invoke(app, ["analyze", "--db", url, "--out", str(tmp / "report"),
                                      "analysis.settings.bootstrap_resamples=200"])
    assert result.exit_code == 0, result.output
    text = (tmp / "report" / "report.json").read_text()
    assert "NaN" not in text
    maps = {f: mapping for f, (_, mapping) in legacy.CELL_SOURCES.items()}
    return json.loads(text), legacy_labels(legacy_db), lambda field, value: maps[field].get(value, value)


def test_published_study_end_to_end(published, published_report, legacy_db):
    """The imported study's report holds the data's figures; it says that the study has no metric scores."""
    _, expected = published
    report, _, name_of = published_report
    check_published(report, expected, name_of=name_of)
    (ris,) = [c for c in report["cells"]
              if (c["metric"], c["backbone"], c["attribution"]) == ("ris", "resnet18", "gradcam")]
    assert ris["fleiss_kappa"] is None and ris["krippendorff_alpha"] is None and ris["notes"]
    assert report["label_source"] == "real" and len(report["annotators"]) == 5
    # The original app's superuser labelled too: imported as an (inactive) admin and marked in the report.
    with sqlite3.connect(f"file:{legacy_db}?mode=ro", uri=True) as con:
        superusers = {u for (u,) in con.execute("SELECT username FROM auth_user WHERE is_superuser")}
    marked = {a["annotator"] for a in report["annotators"] if a["admin"]}
    assert marked and marked == superusers & {a["annotator"] for a in report["annotators"]}
    assert any("administer the store" in n for n in report["notes"])
    # Every cell: each annotator's net preference, and the leave-one-annotator-out verdicts of both inferences.
    for cell in report["cells"]:
        assert len(cell["annotators"]) == 5 and cell["verdict_changed_without"] is not None
        assert all(set(a["verdicts_without"]) == {"people", "these_annotators"} for a in cell["annotators"])
    assert any("no per-example metric scores" in n for n in report["notes"])
    assert all(c["gain_regression"] is None for c in report["cells"])


PINNED = {  # unambiguous cells of the published study under the default rule, for these 5 annotators
    ("ris", "resnet18", "gradcam"): "imperceptible",       # 1000 of 1000 labels Neither
    ("rma", "vgg16", "gradcam"): "aligned",                 # 62% fine-tuned vs 4% original
    ("rma", "resnet18", "guided_backprop"): "misaligned",   # 85% original vs 1% fine-tuned
}
# For people: every one of the five annotators nets the same side by at least 45 points (checked below), or
# every label is Neither.
PINNED_PEOPLE = {
    ("ris", "resnet18", "gradcam"): "imperceptible",
    ("ris", "resnet18", "excitation_backprop"): "aligned",
    ("ris", "resnet18", "guided_backprop"): "misaligned",
    ("rma", "resnet18", "guided_backprop"): "misaligned",
}


def balanced_anova(net: pd.DataFrame) -> tuple[float, float, float]:
    """(mean, variance of the mean, Satterthwaite df) of an annotators x examples table, by the two-way ANOVA."""
    y = net.to_numpy(dtype=float)
    A, G = y.shape
    grand, rows, cols = y.mean(), y.mean(1), y.mean(0)
    ms_a = G * ((rows - grand) ** 2).sum() / (A - 1)
    ms_b = A * ((cols - grand) ** 2).sum() / (G - 1)
    ms_e = ((y - rows[:, None] - cols[None, :] + grand) ** 2).sum() / ((A - 1) * (G - 1))
    combined = ms_a + ms_b - ms_e
    df = combined ** 2 / (ms_a ** 2 / (A - 1) + ms_b ** 2 / (G - 1) + ms_e ** 2 / ((A - 1) * (G - 1)))
    independent = y.var(ddof=1) / y.size  # the documented floor: never below independent labels' variance
    cap = min(A, G) - 1  # and the documented cap of the df
    if combined / (A * G) <= independent:
        return grand, independent, min(y.size - 1, cap)
    return grand, combined / (A * G), min(df, cap)


def test_published_verdicts_by_the_rule(published_report):
    """Pinned verdicts of both inferences; the example-clustered figures of every cell against statsmodels'
    cluster-robust OLS (t on G - 1 df), the crossed ones against the balanced two-way ANOVA."""
    import statsmodels.api as sm
    from scipy.stats import t as student

    report, frame, name_of = published_report
    cells = {(c["metric"], c["backbone"], c["attribution"]): c for c in report["cells"]}
    assert report["settings"]["generalize"] == "people"
    for key, verdict in PINNED.items():
        assert cells[key]["verdicts"]["these_annotators"] == verdict, (key, cells[key]["verdict_detail"])
    for key, verdict in PINNED_PEOPLE.items():
        assert cells[key]["verdicts"]["people"] == verdict == cells[key]["verdict"], (key, cells[key]["verdict_detail"])
    # People saw differences (49% decisive) and split them 24% / 25%: never "imperceptible".
    split = cells[("irof", "vgg16", "excitation_backprop")]
    assert split["inferences"]["these_annotators"]["decisive_rate_interval"][0] > 0.4
    assert split["inferences"]["people"]["decisive_rate_interval"][0] > 0.10  # perceptible for people too
    assert "imperceptible" not in split["verdicts"].values()
    assert cells[("ris", "resnet18", "gradcam")]["neither_dominant"]
    # 121 fine-tuned vs 78 original decisive labels: pi = 61%, not within 50% +-10%: never no_preference.
    road = cells[("road", "vgg16", "gradcam")]
    assert (road["counts"]["finetuned"], road["counts"]["original"]) == (121, 78)
    assert "no_preference" not in road["verdicts"].values()
    # A significant direction below the perceptibility margin stays imperceptible, with its side named.
    faint = cells[("road", "resnet18", "gradcam")]["inferences"]["these_annotators"]
    assert faint["verdict"] == "imperceptible" and faint["faint_direction"] == "finetuned"
    assert faint["direction_test"]["p_value_holm"] < 0.05 and faint["decisive_rate_interval"][1] < 0.10
    for key, part in frame.groupby(["metric", "backbone", "attribution"]):
        key = tuple(name_of(f, v) for f, v in zip(("metric", "backbone", "attribution"), key))
        cell = cells[key]
        these, people = cell["inferences"]["these_annotators"], cell["inferences"]["people"]
        net = part.choice.map({"finetuned": 1.0, "neither": 0.0, "original": -1.0})
        per_annotator = net.groupby(part.annotator).mean()
        if key in PINNED_PEOPLE and PINNED_PEOPLE[key] != "imperceptible":
            sign = 1 if PINNED_PEOPLE[key] == "aligned" else -1
            assert (sign * per_annotator >= 0.45).all(), (key, per_annotator)
        if np.all(net == net.iloc[0]):
            continue
        fit = sm.OLS(net.to_numpy(), np.ones(len(net))).fit(cov_type="cluster", use_t=True,
                                                            cov_kwds={"groups": part.example_id.to_numpy()})
        assert these["net_preference"] == pytest.approx(fit.params[0], abs=1e-12)
        assert these["net_preference_se"] == pytest.approx(fit.bse[0], rel=1e-9)
        assert these["direction_test"]["p_value"] == pytest.approx(fit.pvalues[0], rel=1e-6, abs=1e-300)
        mean, variance, df = balanced_anova(pd.DataFrame({"a": part.annotator, "e": part.example_id, "y": net})
                                            .pivot(index="a", columns="e", values="y"))
        assert people["net_preference"] == pytest.approx(mean, abs=1e-12)
        assert people["net_preference_se"] == pytest.approx(np.sqrt(variance), rel=1e-9)
        assert people["df"] == pytest.approx(df, rel=1e-9)
        assert people["direction_test"]["p_value"] == pytest.approx(
            2 * student.sf(abs(mean) / np.sqrt(variance), df), rel=1e-6, abs=1e-300)
        assert cell["verdict"] == people["verdict"]
