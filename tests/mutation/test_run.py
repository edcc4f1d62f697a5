"""`make mutate`'s bookkeeping (mutation/run.py): which mutants it skips, and which results it keeps.

A wrong rule here would hide live mutants (a skip too wide) or report stale kills, so the
rules are checked on a toy module whose mutants are known by reading it.
"""
from __future__ import annotations

import ast
import importlib.util
import sys

import pytest

pytest.importorskip("cosmic_ray", reason="cosmic-ray (the dev extra) runs `make mutate`")
from cosmic_ray.commands import init as cr_init  # noqa: E402
from cosmic_ray.work_db import WorkDB, use_db  # noqa: E402
from tests.conftest import REPO

TOY = '''from __future__ import annotations


def double(x: int | None) -> int:
    return x * 2


class Box:
    def small(self, n):
        return n < 3
'''


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("harmony_mutation_run", REPO / "mutation" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def reasons(run, tmp_path, scope=(), equivalents=(), skip_operators=()) -> dict[tuple, str | None]:
    """(operator, line, source line) -> skip reason (None: run) for every mutant of the toy module."""
    path = tmp_path / "toy.py"
    path.write_text(TOY)
    module = run.Module(name="toy", path="toy.py", tests=[], scope=list(scope))
    lines = TOY.splitlines()
    with use_db(":memory:", WorkDB.Mode.create) as db:
        cr_init([path], db, {})
        mutations = [item.mutations[0] for item in db.work_items]
    out = {}
    for m in mutations:
        key = (m.operator_name, m.start_pos[0], m.start_pos[1])
        out[key] = run.skip_reason(m, module, ast.parse(TOY), lines, list(equivalents), list(skip_operators))
    return out


def test_annotations_are_equivalent_and_code_is_run(run, tmp_path):
    found = reasons(run, tmp_path)
    annotation = [r for (op, line, _), r in found.items() if line == 4 and "BitOr" in op]
    assert annotation and all(r.startswith("equivalent: an annotation") for r in annotation)
    assert found[("core/ReplaceBinaryOperator_Mul_Div", 5, 13)] is None  # `x * 2` -> `x / 2` runs
    assert found[("core/ReplaceComparisonOperator_Lt_GtE", 10, 17)] is None


def test_scope_keeps_only_the_named_definitions(run, tmp_path):
    found = reasons(run, tmp_path, scope=["Box.small"])
    assert found[("core/ReplaceBinaryOperator_Mul_Div", 5, 13)].startswith("out of scope")
    assert found[("core/ReplaceComparisonOperator_Lt_GtE", 10, 17)] is None
    with pytest.raises(run.MutationError, match="Box.large"):
        reasons(run, tmp_path, scope=["Box.large"])


def test_listed_equivalents_and_unsampled_operators_are_skipped(run, tmp_path):
    entry = dict(path="toy.py", operator="core/ReplaceBinaryOperator_Mul_Div", line="return x * 2",
                 reason="toy reason")
    sampled = dict(pattern="core/ReplaceBinaryOperator_Mul_(?!Div$).*", reason="not sampled: toy")
    found = reasons(run, tmp_path, equivalents=[entry], skip_operators=[sampled])
    assert found[("core/ReplaceBinaryOperator_Mul_Div", 5, 13)] == "equivalent: toy reason"
    assert found[("core/ReplaceBinaryOperator_Mul_Add", 5, 13)] == "out of scope: not sampled: toy"
    assert found[("core/ReplaceComparisonOperator_Lt_GtE", 10, 17)] is None


def test_results_survive_only_what_cannot_change_them(run):
    from cosmic_ray.work_item import TestOutcome

    old = {"source": "a", "tests": [["tests/t.py"], None], "rules": "r"}
    assert run.results_still_valid(old, dict(old, rules="s")) >= {TestOutcome.KILLED, TestOutcome.SURVIVED}
    more_tests = dict(old, tests=[["tests/t.py", "tests/u.py"], None])
    assert run.results_still_valid(old, more_tests) == {TestOutcome.KILLED, TestOutcome.INCOMPETENT}
    assert run.results_still_valid(old, dict(old, tests=[["tests/u.py"], None])) == set()
    assert run.results_still_valid(old, dict(old, source="b")) == set()



def test_an_entry_with_a_mutant_matches_only_that_mutation(run, tmp_path):
    """`2` in `x * 2` gives two mutants at one position (3 and 1): `mutant` names one of them."""
    path = tmp_path / "toy.py"
    path.write_text(TOY)
    module = run.Module(name="toy", path="toy.py", tests=[])
    entry = dict(path="toy.py", operator="core/NumberReplacer", line="return x * 2", mutant="return x * 3",
                 reason="toy")
    with use_db(":memory:", WorkDB.Mode.create) as db:
        cr_init([path], db, {})
        numbers = [item.mutations[0] for item in db.work_items
                   if item.mutations[0].operator_name == "core/NumberReplacer" and item.mutations[0].start_pos[0] == 5]
    lines = TOY.splitlines()
    assert sorted(run.mutated_line(m, lines) for m in numbers) == ["return x * 1", "return x * 3"]
    skipped = {run.mutated_line(m, lines): run.skip_reason(m, module, ast.parse(TOY), lines, [entry], [])
               for m in numbers}
    assert skipped == {"return x * 3": "equivalent: toy", "return x * 1": None}
