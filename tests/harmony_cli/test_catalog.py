"""`harmony metrics` / `harmony attributions` (harmony_cli/catalog.py, commands/catalog.py): one row per
config, with the facts of its class; the facts expected here are written out from the papers and the
issue, not read from the code."""
from __future__ import annotations

from harmony_cli.catalog import attribution_rows, metric_rows
from tests.helpers import harmony_main

METRICS = {  # name: (family, direction, needs masks, reference)
    "rma": ("localization", "higher is better", "yes", "Arras et al. 2022"),
    "ris": ("stability", "lower is better", "no", "Agarwal et al. 2022"),
    "sparseness": ("complexity", "higher is better", "no", "Chalasani et al. 2020"),
    "complexity": ("complexity", "lower is better", "no", "Bhatt et al. 2020"),
    "pointing_game": ("localization", "higher is better", "yes", "Zhang et al. 2018"),
    "rra": ("localization", "higher is better", "yes", "Arras et al. 2022"),
    "deletion": ("perturbation", "lower is better", "no", "Petsiuk et al. 2018"),
    "max_sensitivity": ("stability", "lower is better", "no", "Yeh et al. 2019"),
}
ATTRIBUTIONS = {"integrated_gradients": ("gradient", "IntegratedGradients"), "smoothgrad": ("gradient", "NoiseTunnel"),
                "gradcam_plus_plus": ("CAM", "Captum has none"), "layercam": ("CAM", "Captum has none"),
                "lrp": ("rule-based", "EpsilonPlusFlat"), "lrp_gamma_box": ("rule-based", "EpsilonGammaBox"),
                "guided_backprop": ("gradient", "GuidedBackprop")}


def test_metric_rows_hold_each_class_s_facts():
    rows = {row["name"]: row for row in metric_rows()}
    assert {"focus", "road", "irof", "insertion"} <= set(rows)
    assert rows["insertion"]["direction"] == "higher is better"
    for name, (family, direction, masks, reference) in METRICS.items():
        row = rows[name]
        assert (row["family"], row["direction"], row["needs masks"], row["reference"]) == \
            (family, direction, masks, reference), name
        assert row["equals"].startswith("quantus."), name


def test_attribution_rows_hold_each_class_s_facts():
    rows = {row["name"]: row for row in attribution_rows()}
    assert {"gradcam", "guided_backprop", "saliency"} <= set(rows)
    for name, (family, equals) in ATTRIBUTIONS.items():
        assert rows[name]["family"] == family and equals in rows[name]["equals"], name


def test_the_commands_print_the_rows(monkeypatch, capsys):
    result = harmony_main(monkeypatch, capsys, "metrics")
    assert result.returncode == 0
    lines = [line for line in result.stdout.splitlines() if "pointing_game" in line]
    assert len(lines) == 1 and "Zhang et al. 2018" in lines[0] and "yes" in lines[0]
    lines = [line for line in result.stdout.splitlines() if "max_sensitivity" in line]
    assert len(lines) == 1 and "Yeh et al. 2019" in lines[0] and "lower is better" in lines[0]
    result = harmony_main(monkeypatch, capsys, "attributions")
    assert result.returncode == 0
    lines = [line for line in result.stdout.splitlines() if " lrp_gamma_box " in line]
    assert len(lines) == 1 and "zennit EpsilonGammaBox" in lines[0]
