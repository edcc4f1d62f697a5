"""`harmony finetune -m` over a new metric and a new attribution method (issue 28's extension at work):
two steps on the embedded default, through the command line, leave a finished run whose metrics.json
names them and holds finite scores, so build-dataset can take the run."""
from __future__ import annotations

import json
import math

from tests.helpers import harmony


def test_a_sweep_with_a_new_metric_and_a_new_method_trains_and_scores(small_run, tmp_path):
    overrides = [o for o in small_run if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))]
    result = harmony("finetune", "-m", "metric=pointing_game", "attribution=integrated_gradients,lrp",
                     "trainer.max_steps=2", "trainer.val_check_interval=2",
                     *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(tmp_path.rglob("metrics.json"))
    assert len(runs) == 2
    seen = set()
    for path in runs:
        metrics = json.loads(path.read_text())
        assert metrics["metric"] == "pointing_game" and metrics["steps"] == 2
        seen.add(metrics["attribution"])
        assert metrics["history"] and all(math.isfinite(row[key]) for row in metrics["history"]
                                          for key in row if isinstance(row[key], float))
    assert seen == {"integrated_gradients", "lrp"}
