"""The report's figures, each written as PNG and PDF (TrueType fonts embedded, no Type 3: journals ask for it).

preferences (7 in wide, a double column; 6.5 pt text at the smallest): per cell, stacked bars of
original / neither / fine-tuned labels; the decisive rate d with its interval and the perceptibility
margin; the net preference with its interval for people (thick) and for these annotators (thin), the
equivalence band; both verdicts and the Neither-dominant mark. Intervals are unadjusted (marked so);
the verdicts use Holm-corrected tests. gain: per cell with per-example scores, the share of decisive
labels choosing the fine-tuned map by metric-gain bin with its Wilson interval and the bin's count, and
the fitted logistic curve.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ..cells import REPORT_ORDER, REPORT_SEPARATOR, cell_text

# Colour-blind safe: the two maps in opposite hues, Neither in grey between them.
COLORS = {"original": "#e66101", "neither": "#bababa", "finetuned": "#2c7bb6"}
VERDICT_COLORS = {"aligned": "#2c7bb6", "misaligned": "#e66101", "no_preference": "#4d4d4d",
                  "imperceptible": "#888888", "inconclusive": "#888888"}
DOMINANT_MARK = "†"


# TrueType (42) rather than Type 3 fonts in PDF and PostScript.
EMBEDDED_FONTS = {"pdf.fonttype": 42, "ps.fonttype": 42}
DOUBLE_COLUMN_IN = 7.0


def save_figure(fig, path: Path, tight: bool = True) -> Path:
    """``path`` as PNG and its .pdf sibling (TrueType fonts); ``tight=False`` keeps the figure's own size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    box = {"bbox_inches": "tight"} if tight else {}
    with matplotlib.rc_context(EMBEDDED_FONTS):
        fig.savefig(path, dpi=200, **box)
        fig.savefig(path.with_suffix(".pdf"), **box)
    return path


def _bars(ax, group: list[dict], names: list[str]) -> None:
    y = np.arange(len(group))[::-1]
    left = np.zeros(len(group))
    for choice in REPORT_ORDER:
        widths = np.array([(c["shares"][choice] or 0.0) * 100 for c in group])
        ax.barh(y, widths, left=left, color=COLORS[choice], height=0.72, edgecolor="white", linewidth=0.6)
        for yi, x0, w in zip(y, left, widths):
            if w >= 7:
                ax.text(x0 + w / 2, yi, f"{w:.0f}%", ha="center", va="center", fontsize=7,
                        color="white" if choice != "neither" else "#222222")
        left += widths
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xticks([0, 25, 50, 75])
    ax.set_ylim(-0.6, len(group) - 0.4)
    ax.axvline(50, color="black", linewidth=0.4, alpha=0.25)


def _decisive(ax, group: list[dict], margin: float) -> None:
    y = np.arange(len(group))[::-1]
    ax.axvline(margin * 100, color="black", linewidth=0.6, linestyle=(0, (2, 2)), alpha=0.6)
    for yi, c in zip(y, group):
        if c["decisive_rate"] is not None and c["decisive_rate_interval"]:
            low, high = (v * 100 for v in c["decisive_rate_interval"])
            d = c["decisive_rate"] * 100
            ax.errorbar(d, yi, xerr=[[d - low], [high - d]], fmt="o", color="#333333", markersize=2.5, capsize=1.5,
                        linewidth=0.9)
    ax.set_xlim(0, 100)
    ax.set_xticks([0, 50])
    ax.set_ylim(-0.6, len(group) - 0.4)
    ax.set_yticks([])
    ax.tick_params(labelsize=6.5)


def _verdict_label(c: dict) -> str:
    people, these = c["inferences"]["people"], c["inferences"]["these_annotators"]
    faint = " (faint)" if these.get("faint_direction") or people.get("faint_direction") else ""
    return (f"{people['verdict'].replace('_', ' ')} | {these['verdict'].replace('_', ' ')}{faint}"
            + (f" {DOMINANT_MARK}" if c["neither_dominant"] else ""))


def _net_preference(ax, group: list[dict], margin: float) -> None:
    """Δ for people (thick whiskers) and for these annotators (thin, below), the band of a small Δ, both verdicts."""
    y = np.arange(len(group))[::-1]
    ax.axvspan(-margin * 100, margin * 100, color="#eeeeee", zorder=0)
    ax.axvline(0, color="black", linewidth=0.6, alpha=0.5)
    for yi, c in zip(y, group):
        color = VERDICT_COLORS.get(c["inferences"]["people"]["verdict"], "#888888")
        if c["net_preference"] is not None:
            delta = c["net_preference"] * 100
            for name, offset, width in (("people", 0.12, 1.4), ("these_annotators", -0.18, 0.7)):
                interval = c["inferences"][name]["net_preference_interval"]
                if interval:
                    low, high = (v * 100 for v in interval)
                    ax.errorbar(delta, yi + offset, xerr=[[delta - low], [high - delta]], fmt="o" if offset > 0 else "",
                                color=color if offset > 0 else "#555555", markersize=2.5, capsize=1.2,
                                linewidth=width)
        ax.text(1.03, yi, _verdict_label(c), transform=ax.get_yaxis_transform(), va="center", ha="left",
                fontsize=6, color=color)
    ax.set_xlim(-100, 100)
    ax.set_xticks([-50, 0, 50])
    ax.set_ylim(-0.6, len(group) - 0.4)
    ax.set_yticks([])
    ax.tick_params(labelsize=6.5)


def preferences_plot(report: dict, path: Path) -> Path:
    """Write the preferences figure of the report's cells to ``path`` (PNG) and its .pdf sibling, 7 in wide."""
    cells, settings = report["cells"], report["settings"]
    several = len({c["dataset"] for c in cells}) > 1
    metrics = sorted({c["metric"] for c in cells})
    groups = [[c for c in cells if c["metric"] == m] for m in metrics]
    heights = [max(len(g), 1) for g in groups] or [1]
    fig_height = 1.4 + 0.16 * sum(heights) + 0.3 * len(groups)
    fig = Figure(figsize=(DOUBLE_COLUMN_IN, fig_height))  # no pyplot: no global figure or backend to manage
    axes = fig.subplots(max(len(groups), 1), 3, squeeze=False, sharex="col",
                        gridspec_kw={"height_ratios": heights, "width_ratios": [2.0, 0.9, 1.4],
                                     "hspace": 0.45, "wspace": 0.08})
    for row, (metric, group) in enumerate(zip(metrics, groups)):
        names = [(f"{c['dataset']} / " if several else "") + f"{c['backbone']} / {c['attribution']}" for c in group]
        _bars(axes[row, 0], group, names)
        _decisive(axes[row, 1], group, settings["perceptibility_margin"])
        _net_preference(axes[row, 2], group, settings["equivalence_margin"])
        axes[row, 0].set_title(metric, loc="left", fontsize=7.5, fontweight="bold")
        axes[row, 0].tick_params(labelsize=6.5)
    level = f"{settings['confidence']:.0%}"
    axes[-1, 0].set_xlabel("share of labels (%)", fontsize=6.5)
    axes[-1, 1].set_xlabel("decisive d (%)", fontsize=6.5)
    axes[-1, 2].set_xlabel("net preference Δ (%)", fontsize=6.5)
    fig.text(0.01, 0.08 / fig_height, f"{level} intervals, unadjusted. d: dashed line, the perceptibility margin "
             f"{settings['perceptibility_margin']:.0%}. Δ: thick for people, thin for these {report['n_annotators']} "
             f"annotators; grey band ±{settings['equivalence_margin']:.0%}.\nVerdicts: for people | for these "
             f"annotators (faint: imperceptible, with a significant direction).", fontsize=6)
    handles = [Patch(color=COLORS[c], label=t) for c, t in zip(REPORT_ORDER, ("original preferred", "Neither",
                                                                        "fine-tuned preferred"))]
    fig.legend(handles=handles, loc="upper left", ncol=3, fontsize=6.5, frameon=False,
               bbox_to_anchor=(0.235, 1 - 0.33 / fig_height))
    fig.suptitle(f"{report.get('study', 'labels')}: verdicts for people | for these {report['n_annotators']} "
                 f"annotators\n"
                 f"({report.get('label_source', 'all')} labels; alpha {settings['alpha']}, Holm over cells; intervals "
                 f"unadjusted; {DOMINANT_MARK} Neither > {settings['neither_dominant']:.0%})", fontsize=7,
                 x=0.01, ha="left", y=1 - 0.04 / fig_height)
    fig.subplots_adjust(left=0.235, right=0.76, top=1 - 0.7 / fig_height, bottom=0.62 / fig_height)
    return save_figure(fig, path, tight=False)


def gain_plot(report: dict, path: Path) -> Path | None:
    """Write the metric-gain figure (PNG + PDF) for cells with per-example scores; None when there are none."""
    scored = [c for c in report["cells"] if c.get("gain_regression") and c["gain_regression"].get("bins")]
    if not scored:
        return None
    columns = min(3, len(scored))
    rows = -(-len(scored) // columns)
    fig = Figure(figsize=(3.6 * columns, 2.8 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, cell in zip(axes.ravel(), scored):
        reg = cell["gain_regression"]
        gains = np.array([b["mean_gain"] for b in reg["bins"]])
        shares = np.array([b["finetuned_share"] for b in reg["bins"]])
        sizes = np.array([b["n_decisive"] for b in reg["bins"]])
        ax.scatter(gains, shares * 100, s=12 + 60 * sizes / sizes.max(), color=COLORS["finetuned"], zorder=3)
        for b in reg["bins"]:
            if b.get("interval"):
                low, high = (100 * v for v in b["interval"])
                ax.errorbar(b["mean_gain"], 100 * b["finetuned_share"], yerr=[[100 * b["finetuned_share"] - low],
                                                                              [high - 100 * b["finetuned_share"]]],
                            fmt="none", color=COLORS["finetuned"], capsize=2, linewidth=0.8)
            ax.annotate(f"n={b.get('n_examples', b['n_decisive'])}", (b["mean_gain"], 100 * b["finetuned_share"]),
                        textcoords="offset points", xytext=(0, 7), ha="center", fontsize=6)
        if reg.get("coefficient") is not None:
            grid = np.linspace(gains.min(), gains.max(), 100)
            curve = 1 / (1 + np.exp(-(reg["intercept"] + reg["coefficient"] * grid)))
            p = reg.get("p_value_holm")
            ax.plot(grid, curve * 100, color="black", linewidth=1,
                    label=f"logit fit, Holm p {p:.2g}" if p is not None else "logit fit")
            ax.legend(fontsize=7, frameon=False, loc="lower right")
        ax.axhline(50, color="black", linewidth=0.4, alpha=0.3)
        ax.set_ylim(0, 100)
        ax.set_title(cell_text(cell, separator=REPORT_SEPARATOR), fontsize=8.5)
        ax.tick_params(labelsize=7.5)
        ax.xaxis.set_major_locator(MaxNLocator(4))
    for ax in axes.ravel()[len(scored):]:
        ax.set_visible(False)
    fig.supxlabel("metric gain of the fine-tuned map (per-example bins; sign flipped where lower is better)",
                  fontsize=8.5)
    fig.supylabel("decisive labels choosing fine-tuned (%), 95% by example; n: examples", fontsize=8.5)
    fig.tight_layout()
    return save_figure(fig, path)
