"""What a study's design is: the names build-dataset, the store, the page and the sequential rule share.

Free of torch, pandas and SQL, so each of them imports it at no cost (build-dataset checks its settings before
anything heavy loads). The rule itself is ``harmony_cli.analysis.sequential``.
"""
from __future__ import annotations

# study.design: every cell gets its labels (fixed), or each stops once its verdict is decided (sequential).
DESIGNS = ("fixed", "sequential")
# A sequential cell no look has decided yet: it keeps taking labels.
UNDECIDED = "undecided"
# Where a sequential study records its verdict rule at build (the pre-registration its looks keep, whatever
# conf/analysis says later), and the analysis settings that make it up.
RULE_KEY = "rule"
RULE_FIELDS = ("alpha", "confidence", "perceptibility_margin", "equivalence_margin", "min_examples", "generalize")
