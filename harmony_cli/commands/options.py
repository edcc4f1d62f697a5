"""Options that several commands share, each defined once."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

# The store every command reads or writes; where the default comes from: harmony_cli.defaults.default_db_url.
DB_HELP = ("Store URL or SQLite file (default: $HARMONY_DB_URL, else <outputs>/harmony.db; <outputs> is "
           "$HARMONY_OUTPUTS or ./outputs).")
DbOption = Annotated[Optional[str], typer.Option("--db", help=DB_HELP)]
