"""`harmony finetune -m` over a new metric and a new attribution method (issue 28's extension at work):
two steps on the embedded default, through the command line, leave a finished run whose metrics.json
names them and holds finite scores. One cell: each costs a process start and a validation."""
from __future__ import annotations

import json
import math

from tests.helpers import harmony


def test_a_sweep_with_a_new_metric_and_a_new_method_trains_and_scores(small_run, tmp_path):
    overrides = [o for o in small_run if not o.startswith(("trainer.max_steps", "trainer.val_check_interval",
                                                           "finetune.val_size", "finetune.plot_images"))]
    result = harmony("finetune", "-m", "metric=pointing_game", "attribution=lrp",
                     "trainer.max_steps=2", "trainer.val_check_interval=2",
                     "finetune.val_size=8", "finetune.plot_images=2",
                     *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = tmp_path.rglob("metrics.json")  # the sweep's one cell
    metrics = json.loads(path.read_text())
    assert (metrics["metric"], metrics["attribution"], metrics["steps"]) == ("pointing_game", "lrp", 2)
    assert metrics["history"] and all(math.isfinite(row[key]) for row in metrics["history"]
                                      for key in row if isinstance(row[key], float))
