"""Issue 28's sweep, `harmony finetune -m metric=deletion,pointing_game,sparseness
attribution=integrated_gradients,lrp`, through the command line on the embedded default: two steps per cell
leave six finished runs whose metrics.json name their cell and hold finite scores, and `harmony build-dataset`
makes a study of the sweep with an example in each of the six cells, their images and maps on disk."""
from __future__ import annotations

import itertools
import json
import math
import sqlite3

from tests.helpers import harmony

METRICS, ATTRIBUTIONS = ("deletion", "pointing_game", "sparseness"), ("integrated_gradients", "lrp")


def test_the_issue_s_sweep_trains_two_steps_per_cell_and_build_dataset_makes_a_study_of_it(small_run, tmp_path):
    overrides = [o for o in small_run if not o.startswith(("trainer.max_steps", "trainer.val_check_interval",
                                                           "finetune.val_size", "finetune.plot_images",
                                                           "finetune.batch_size", "finetune.val_batch_size"))]
    result = harmony("finetune", "-m", f"metric={','.join(METRICS)}", f"attribution={','.join(ATTRIBUTIONS)}",
                     "trainer.max_steps=2", "trainer.val_check_interval=2", "finetune.val_size=8",
                     "finetune.plot_images=2", "finetune.batch_size=4", "finetune.val_batch_size=8",
                     "finetune.fold_batchnorm=false", *overrides)  # small batches: six cells of second-order steps
    assert result.returncode == 0, result.stderr[-3000:]
    paths = sorted(tmp_path.rglob("metrics.json"))
    cells = {}
    for path in paths:
        metrics = json.loads(path.read_text())
        cells[metrics["metric"], metrics["attribution"]] = metrics
        assert metrics["steps"] == 2 and metrics["history"]
        assert all(math.isfinite(row[key]) for row in metrics["history"] for key in row
                   if isinstance(row[key], float)), path
    assert len(paths) == 6 and set(cells) == set(itertools.product(METRICS, ATTRIBUTIONS))
    (sweep,) = {path.parent.parent for path in paths}  # the sweep folder holds one run folder per cell

    db = tmp_path / "study.db"
    built = harmony("build-dataset", f"run={sweep}", "study.name=sweep28", "study.examples_per_cell=1",
                    *[o for o in overrides if o.startswith("paths.")], "--db", f"sqlite:///{db}")
    assert built.returncode == 0, built.stderr[-3000:]
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT e.metric, e.attribution, e.image_path, e.original_map_path, e.finetuned_map_path "
                            "FROM harmony_example e JOIN harmony_study s ON s.id = e.study_id "
                            "WHERE s.name = 'sweep28'").fetchall()
    per_cell = {cell: sum(1 for row in rows if row[:2] == cell) for cell in cells}
    assert per_cell == {cell: 1 for cell in cells}, per_cell
    image_dir = tmp_path / "outputs" / "study_images" / "sweep28"
    assert all((image_dir / path).is_file() for row in rows for path in row[2:])
