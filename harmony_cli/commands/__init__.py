"""Thin Typer commands, one module per CLI name; the work lives in study/, store/, analysis/."""
