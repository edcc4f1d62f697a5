"""Thin Typer commands, one module per CLI name; the work lives in study/, store/, analysis/.

Each command imports what it needs inside its function, and only there: `harmony --help` starts without
torch, Lightning, pandas or matplotlib, and the torch-free commands (annotators, studies, analyze, power)
run without torch or Lightning (tests/test_imports.py checks both).
"""
