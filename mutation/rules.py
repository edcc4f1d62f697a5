"""Which mutants `make mutate` runs: scope, selective sampling, and equivalent mutants (see run.py)."""
from __future__ import annotations

import ast
import re

import cosmic_ray.plugins
from cosmic_ray.mutating import mutate_code

from summary import EQUIVALENT_TAG, OUT_OF_SCOPE_TAG


class MutationError(Exception):
    """A configuration or baseline problem, printed as one line."""


def _span(node: ast.AST) -> tuple[tuple[int, int], tuple[int, int]]:
    return (node.lineno, node.col_offset), (node.end_lineno, node.end_col_offset)


def definition_spans(tree: ast.Module) -> dict[str, tuple]:
    """Qualified name ("Store.answer") -> span of every function and class."""
    spans = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                spans[name] = _span(child)
                visit(child, f"{name}.")
    visit(tree, "")
    return spans


def annotation_spans(tree: ast.Module) -> list[tuple]:
    """Spans of annotations, when `from __future__ import annotations` makes them unevaluated strings."""
    postponed = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                    and any(a.name == "annotations" for a in n.names) for n in tree.body)
    if not postponed:
        return []
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            spans.append(_span(node.returns))
        elif isinstance(node, ast.arg) and node.annotation is not None:
            spans.append(_span(node.annotation))
        elif isinstance(node, ast.AnnAssign):
            spans.append(_span(node.annotation))
    return spans


def _inside(start, end, span) -> bool:
    return span[0] <= tuple(start) and tuple(end) <= span[1]


def skip_reason(mutation, module, tree, lines: list[str], equivalents: list[dict],
                skip_operators: list[dict]) -> str | None:
    """Why this mutant is not run (out of scope / not sampled / equivalent), or None."""
    start, end = mutation.start_pos, mutation.end_pos
    for rule in skip_operators:
        if re.fullmatch(rule["pattern"], mutation.operator_name):
            return OUT_OF_SCOPE_TAG + rule["reason"]
    if module.scope:
        spans = definition_spans(tree)
        unknown = [name for name in module.scope if name not in spans]
        if unknown:
            raise MutationError(f"{module.name}: scope {unknown} not found in {module.path}: update "
                                f"mutation/modules.toml (defined: {', '.join(sorted(spans))})")
        if not any(_inside(start, end, spans[name]) for name in module.scope):
            return OUT_OF_SCOPE_TAG + "outside " + ", ".join(module.scope)
    if any(_inside(start, end, span) for span in annotation_spans(tree)):
        return EQUIVALENT_TAG + "an annotation, never evaluated (from __future__ import annotations)"
    text = lines[start[0] - 1].strip()
    for entry in equivalents:
        if (entry["path"] == module.path and entry["operator"] == mutation.operator_name
                and entry["line"].strip() == text and entry.get("col", start[1]) == start[1]
                and ("mutant" not in entry or mutated_line(mutation, lines) == entry["mutant"].strip())):
            return EQUIVALENT_TAG + entry["reason"]
    return None


def mutated_line(mutation, lines: list[str]) -> str:
    """The mutated source line, stripped (cosmic-ray applies the mutation to the module's text)."""
    operator = cosmic_ray.plugins.get_operator(mutation.operator_name)(**mutation.operator_args)
    code = mutate_code("\n".join(lines) + "\n", operator, mutation.occurrence)
    return code.splitlines()[mutation.start_pos[0] - 1].strip() if code else ""
