"""A small study in the original (Django) app's fixture format, for the import-legacy tests."""
from __future__ import annotations

import json
from pathlib import Path


def write_fixtures(folder: Path) -> None:
    """A small study in the original app's fixture format, with users and labels as `dumpdata` writes them."""
    folder.mkdir()

    def dump(name: str, model: str, rows: list[dict]) -> None:
        objects = [{"pk": i + 1, "model": model, "fields": fields} for i, fields in enumerate(rows)]
        (folder / f"{name}.json").write_text(json.dumps(objects))

    dump("dataset", "relevavance.dataset", [{"name": "ImageNet"}])
    dump("experiment", "relevavance.experiment", [{"name": "IoULearnableMetric"}, {"name": "MysteryLearnableMetric"}])
    dump("cnnmodel", "relevavance.cnnmodel", [{"name": "ResNet"}])
    dump("relevancymethod", "relevavance.relevancymethod", [{"name": "GradCamAttributor"}])
    examples = []
    for pk, experiment in ((1, 1), (2, 1), (3, 2), (4, 2)):
        base = f"data/e{experiment}/{pk}"
        examples.append({"dataset": 1, "experiment": experiment, "cnn_model": 1, "relevancy_method": 1,
                         "prediction": f"class {pk}", "image": f"{base}_image.png",
                         "original": f"{base}_original.png", "learn": f"{base}_learn.png"})
    dump("example", "relevavance.example", examples)
    dump("user", "auth.user", [{"username": "eve"}, {"username": "mallory"}, {"username": "idle"}])
    dump("label", "relevavance.label", [
        {"user": 1, "example": 1, "choice": "learn"},
        {"user": 1, "example": 1, "choice": "original"},  # a double submission: the later one counts
        {"user": 1, "example": 2, "choice": "neither"},
        {"user": 2, "example": 3, "choice": "learn"},
        {"user": 2, "example": 4, "choice": "maybe"},     # not a choice of the app: skipped, reported
    ])
