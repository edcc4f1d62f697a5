"""Making and filling studies: build-dataset, rendering, import-legacy, the annotator simulator.

build-dataset: ``build`` (the study, checks first) -> ``runs`` (which finetune runs) ->
``cells`` (one cell per run: ``selection`` of test images, ``pairs`` of maps and scores,
``rendering`` to PNG) -> ``study_row`` (the study's row, written with its first examples);
``settings`` (the typed ``study`` config group), ``table`` (the summary), ``files`` (atomic
writes, names, write failures as one line). import-legacy: ``legacy_format`` (reading the
original app's data) -> ``import_legacy``. ``simulate``: simulated annotators.
"""
