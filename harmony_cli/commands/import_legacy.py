"""``harmony import-legacy``: the command line of :mod:`harmony_cli.study.import_legacy`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import DbOption


def command(
    path: Path = typer.Argument(..., help="The original app's SQLite database, or its Django fixtures folder."),
    db: DbOption = None,
    images: Optional[Path] = typer.Option(None, "--images", help="Folder the legacy image paths are relative to: "
                                                                 "its images are copied into the study."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: the file or folder name)."),
) -> None:
    """Import a study made with the original HARMONY Django app (its database or fixtures)."""
    from ..console import output_console

    from ..store import Store
    from ..study.files import check_study_name
    from ..study.import_legacy import check_images_folder, import_legacy
    from ..study.legacy_format import read_legacy

    legacy = read_legacy(path)  # wrong input fails before the store is touched
    check_study_name(study or path.stem, "--study")
    check_images_folder(images)
    with Store.open_for_command(db) as store:  # a failed import leaves no new, empty store file
        report = import_legacy(store, path, images=images, study=study, progress=True, legacy=legacy)
    console = output_console(highlight=False)
    for line in report.lines():
        console.print(line, soft_wrap=True, markup=False)
