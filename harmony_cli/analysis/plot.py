"""The report's figures, each written as PNG and PDF.

preferences: per cell, stacked bars of original / neither / fine-tuned labels, and beside them the net
preference with its example-clustered interval (whiskers), the equivalence band, the verdict and the
Neither-dominant mark. gain: per cell with per-example scores, the share of decisive labels choosing
the fine-tuned map by metric-gain bin, with the fitted logistic curve.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cells import REPORT_ORDER, REPORT_SEPARATOR, cell_text

# Colour-blind safe: the two maps in opposite hues, Neither in grey between them.
COLORS = {"original": "#e66101", "neither": "#bababa", "finetuned": "#2c7bb6"}
VERDICT_COLORS = {"aligned": "#2c7bb6", "misaligned": "#e66101", "no_preference": "#4d4d4d",
                  "imperceptible": "#888888", "inconclusive": "#888888"}
DOMINANT_MARK = "†"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """``path`` as PNG and its .pdf sibling."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    fig.savefig(path.with_suffix(".pdf"), bbox_inches="tight")
    _pyplot().close(fig)
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
    ax.set_ylim(-0.6, len(group) - 0.4)
    ax.axvline(50, color="black", linewidth=0.4, alpha=0.25)


def _net_preference(ax, group: list[dict], margin: float) -> None:
    y = np.arange(len(group))[::-1]
    ax.axvspan(-margin * 100, margin * 100, color="#eeeeee", zorder=0)
    ax.axvline(0, color="black", linewidth=0.6, alpha=0.5)
    for yi, c in zip(y, group):
        color = VERDICT_COLORS.get(c["verdict"], "#888888")
        if c["net_preference"] is not None:
            low, high = (v * 100 for v in c["net_preference_interval"])
            ax.errorbar(c["net_preference"] * 100, yi, xerr=[[c["net_preference"] * 100 - low],
                                                             [high - c["net_preference"] * 100]],
                        fmt="o", color=color, markersize=3.5, capsize=2.5, linewidth=1.1)
        label = c["verdict"].replace("_", " ") + (f" {DOMINANT_MARK}" if c["neither_dominant"] else "")
        ax.text(1.04, yi, label, transform=ax.get_yaxis_transform(), va="center", ha="left", fontsize=7.5,
                color=color, fontweight="bold" if c["verdict"] in ("aligned", "misaligned") else "normal")
    ax.set_xlim(-100, 100)
    ax.set_ylim(-0.6, len(group) - 0.4)
    ax.set_yticks([])


def preferences_plot(report: dict, path: Path) -> Path:
    """Write the preferences figure of the report's cells to ``path`` (PNG) and its .pdf sibling."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    cells, settings = report["cells"], report["settings"]
    several = len({c["dataset"] for c in cells}) > 1
    metrics = sorted({c["metric"] for c in cells})
    groups = [[c for c in cells if c["metric"] == m] for m in metrics]
    heights = [max(len(g), 1) for g in groups] or [1]
    fig_height = 1.4 + 0.32 * sum(heights) + 0.45 * len(groups)
    fig, axes = plt.subplots(max(len(groups), 1), 2, figsize=(12, fig_height), squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": heights, "width_ratios": [3, 1.6], "hspace": 0.35,
                                          "wspace": 0.14})
    for row, (metric, group) in enumerate(zip(metrics, groups)):
        names = [(f"{c['dataset']} / " if several else "") + f"{c['backbone']} / {c['attribution']}" for c in group]
        _bars(axes[row, 0], group, names)
        _net_preference(axes[row, 1], group, settings["equivalence_margin"])
        axes[row, 0].set_title(metric, loc="left", fontsize=9.5, fontweight="bold")
    level = f"{settings['confidence']:.0%}"
    axes[-1, 0].set_xlabel("share of labels (%)", fontsize=8.5)
    axes[-1, 1].set_xlabel(f"net preference (fine-tuned − original) / labels, % [{level} clustered]; grey band: "
                           f"±equivalence margin", fontsize=7.5)
    handles = [Patch(color=COLORS[c], label=t) for c, t in zip(REPORT_ORDER, ("original map preferred", "Neither",
                                                                        "fine-tuned map preferred"))]
    fig.legend(handles=handles, loc="upper center", ncol=3, fontsize=8.5, frameon=False, bbox_to_anchor=(0.4, 1.0))
    fig.suptitle(f"{report['study']}: which map do people prefer? ({report['label_source']} labels; alpha "
                 f"{settings['alpha']}, Holm over cells; {DOMINANT_MARK}: Neither > "
                 f"{settings['neither_dominant']:.0%} of labels)", fontsize=10, y=1.0 + 0.35 / fig_height)
    fig.subplots_adjust(left=0.2, right=0.86, top=1 - 0.55 / fig_height, bottom=0.55 / fig_height)
    return _save(fig, path)


def gain_plot(report: dict, path: Path) -> Path | None:
    """Write the metric-gain figure (PNG + PDF) for cells with per-example scores; None when there are none."""
    scored = [c for c in report["cells"] if c.get("gain_regression") and c["gain_regression"].get("bins")]
    if not scored:
        return None
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    columns = min(3, len(scored))
    rows = -(-len(scored) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.8 * rows), squeeze=False)
    for ax, cell in zip(axes.ravel(), scored):
        reg = cell["gain_regression"]
        gains = np.array([b["mean_gain"] for b in reg["bins"]])
        shares = np.array([b["finetuned_share"] for b in reg["bins"]])
        sizes = np.array([b["n_decisive"] for b in reg["bins"]])
        ax.scatter(gains, shares * 100, s=12 + 60 * sizes / sizes.max(), color=COLORS["finetuned"], zorder=3)
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
    fig.supylabel("decisive labels choosing fine-tuned (%)", fontsize=8.5)
    fig.tight_layout()
    return _save(fig, path)
