"""The study a build writes into. Its row is created in the transaction of its first examples.

So a build that fails before it stores anything (a read-only or full folder, a run without
a checkpoint, a bad setting) leaves no empty study for ``analyze`` or ``simulate-annotators``
to pick as the newest, and a rerun with corrected settings starts afresh.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import func, select

from ..designs import RULE_KEY
from ..store import Example, Study
from . import instructions as study_instructions
from .settings import PINNED_SETTINGS, BuildError, StudySettings


@dataclass
class StudyRow:
    """Where a build's examples go: ``id`` is None until the first examples are stored.

    ``config``: what the study records (pinned settings, source runs, ``higher_is_better`` per metric,
    the annotators' ``instructions`` when ``study.instructions`` gives them: a later build that gives
    others replaces them).
    """

    store: Any
    name: str
    config: dict
    image_dir: Path
    id: Optional[int] = None

    @classmethod
    def open(cls, store, name: str, settings: StudySettings, config: dict, image_dir: Path) -> "StudyRow":
        """The study called ``name``: the stored one to complete, or a new one (not written yet)."""
        found = store.study(name)
        instructions = study_instructions.from_setting(settings.instructions)
        if instructions is not None:
            config = {**config, study_instructions.CONFIG_KEY: instructions}
        if found is None:
            return cls(store, name, config, image_dir)
        if found.source != "harmony" or not found.image_dir:
            how = f"was imported ({found.source})" if found.source != "harmony" else "has no image folder"
            raise BuildError(f"study {name!r} {how}, so build-dataset cannot add to it: give another study.name=")
        recorded = found.config or {}
        _refuse_other_settings(name, recorded, config, Path(found.image_dir), image_dir)
        with store.read() as session:
            empty = not _has_examples(session, found.id)
        if empty:  # a row an older harmony left behind: start it afresh
            return cls(store, name, config, image_dir, id=found.id)
        if instructions is not None and recorded.get(study_instructions.CONFIG_KEY) != instructions:
            recorded = store.update_study_config(name, **{study_instructions.CONFIG_KEY: instructions})
        return cls(store, name, recorded, Path(found.image_dir), id=found.id)

    def add(self, rows: list[dict], higher_is_better: dict[str, bool]) -> None:
        """Store ``rows`` (examples) and the metrics' directions; the study row too if it is new. One transaction."""
        with self.store.write() as session:
            study = session.get(Study, self.id) if self.id is not None else None
            if study is None:
                study = Study(name=self.name, source="harmony", config={}, image_dir=str(self.image_dir))
                session.add(study)
            if study.id is None or not _has_examples(session, study.id):
                study.config, study.image_dir = dict(self.config), str(self.image_dir)
            recorded = dict((study.config or {}).get("higher_is_better") or {})
            if any(recorded.get(k) != v for k, v in higher_is_better.items()):
                # a new dict: SQLAlchemy tracks the JSON column by assignment
                study.config = {**study.config, "higher_is_better": {**recorded, **higher_is_better}}
            session.flush()
            self.store.add_examples(study.id, rows, session=session)
        self.id = study.id

    def keys(self, cell: dict) -> set[str]:
        """``source_key`` of every example stored in ``cell``."""
        return set() if self.id is None else self.store.example_keys(self.id, cell)

    def keys_of_sibling_cells(self, cell: dict) -> set[str]:
        """Test images used by the study's other cells of the same data, backbone and attribution."""
        if self.id is None:
            return set()


        with self.store.read() as session:
            return set(session.scalars(select(Example.source_key).where(
                Example.study_id == self.id, Example.dataset == cell["dataset"], Example.backbone == cell["backbone"],
                Example.attribution == cell["attribution"], Example.metric != cell["metric"])))

    def cell_means(self, cell: dict) -> tuple[float | None, float | None]:
        """Mean original and fine-tuned score over a cell's examples (those with a defined score)."""
        if self.id is None:
            return None, None


        with self.store.read() as session:
            original, finetuned = session.execute(
                select(func.avg(Example.original_score), func.avg(Example.finetuned_score))
                .filter_by(study_id=self.id, **cell)).one()
        return (None if original is None else float(original)), (None if finetuned is None else float(finetuned))


def _refuse_other_settings(name: str, recorded: dict, config: dict, recorded_dir: Path, image_dir: Path) -> None:
    """A one-line BuildError naming every setting in which this build differs from the stored study's
    (those it records, and its image folder): completing it with others would mix two studies in one."""
    changed = [f"study.{key}={recorded[key]} (not {config[key]})" for key in PINNED_SETTINGS
               if key in recorded and key in config and recorded[key] != config[key]]
    rule, asked = recorded.get(RULE_KEY) or {}, config.get(RULE_KEY) or {}
    changed += [f"analysis.settings.{key}={rule[key]} (not {asked[key]}: the sequential rule it recorded)"
                for key in sorted(rule) if key in asked and rule[key] != asked[key]]
    if recorded_dir != image_dir:
        root = recorded_dir.parent if recorded_dir.name == name else recorded_dir
        changed.append(f"study.image_dir={root} (not {image_dir.parent})")
    if changed:
        raise BuildError(f"study {name!r} exists with {', '.join(changed)}: rerun with those settings to "
                         f"complete it, or give a new study.name=")


def _has_examples(session, study_id: int) -> bool:
    return session.scalar(select(Example.id).where(Example.study_id == study_id).limit(1)) is not None
