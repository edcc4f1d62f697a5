"""preferences.png: per cell, stacked horizontal bars of original / neither / finetuned, grouped by metric."""
from __future__ import annotations

from pathlib import Path

from .stats import CHOICES

# Colour-blind safe: the two maps in opposite hues, Neither in grey between them.
COLORS = {"original": "#e66101", "neither": "#bababa", "finetuned": "#2c7bb6"}
VERDICT_STYLE = {"aligned": ("#2c7bb6", "aligned"), "misaligned": ("#e66101", "misaligned"),
                 "imperceptible": ("#555555", "imperceptible"), "no_labels": ("#999999", "no labels")}


def preferences_plot(report: dict, path: Path) -> Path:
    """Write the stacked bar chart of the report's cells to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    cells = report["cells"]
    several_datasets = len({c["dataset"] for c in cells}) > 1
    metrics = list(dict.fromkeys(c["metric"] for c in sorted(cells, key=lambda c: c["metric"])))
    groups = {m: [c for c in cells if c["metric"] == m] for m in metrics}
    heights = [max(len(g), 1) for g in groups.values()]
    fig_height = 1.2 + 0.32 * sum(heights) + 0.45 * len(metrics)
    fig, axes = plt.subplots(len(metrics) or 1, 1, figsize=(10, fig_height), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": heights or [1], "hspace": 0.35})
    for ax, metric in zip(axes[:, 0], metrics):
        group = groups[metric]
        names = [(f"{c['dataset']} / " if several_datasets else "") + f"{c['backbone']} / {c['attribution']}"
                 for c in group]
        y = list(range(len(group)))[::-1]
        left = [0.0] * len(group)
        for choice in CHOICES:
            widths = [(c["shares"][choice] or 0.0) * 100 for c in group]
            ax.barh(y, widths, left=left, color=COLORS[choice], height=0.72, edgecolor="white", linewidth=0.6)
            for yi, x0, w in zip(y, left, widths):
                if w >= 7:
                    ax.text(x0 + w / 2, yi, f"{w:.0f}%", ha="center", va="center", fontsize=7,
                            color="white" if choice != "neither" else "#222222")
            left = [a + b for a, b in zip(left, widths)]
        for yi, c in zip(y, group):
            color, text = VERDICT_STYLE.get(c["verdict"], ("#555555", c["verdict"]))
            share = c["decisive_finetuned_share"]
            extra = f" ({share:.0%})" if share is not None and c["verdict"] != "no_labels" else ""
            ax.text(101.5, yi, text + extra, va="center", ha="left", fontsize=7.5, color=color,
                    fontweight="bold" if c["verdict"] in ("aligned", "misaligned") else "normal")
        ax.set_yticks(y)
        ax.set_yticklabels(names, fontsize=8)
        ax.set_ylim(-0.6, len(group) - 0.4)
        ax.set_xlim(0, 100)
        ax.set_title(metric, loc="left", fontsize=9.5, fontweight="bold")
        ax.axvline(50, color="black", linewidth=0.4, alpha=0.25)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.tick_params(axis="x", labelsize=8)
    axes[-1, 0].set_xlabel("share of labels (%)   ·   right of each bar: verdict (share of the decisive labels "
                           "that prefer the fine-tuned map)", fontsize=8.5)
    handles = [Patch(color=COLORS[c], label={"original": "original map preferred", "neither": "Neither",
                                             "finetuned": "fine-tuned map preferred"}[c]) for c in CHOICES]
    fig.legend(handles=handles, loc="upper center", ncol=3, fontsize=8.5, frameon=False,
               bbox_to_anchor=(0.45, 1.0))
    settings = report["settings"]
    fig.suptitle(f"{report['study']}: which map do people prefer? ({report['label_source']} labels; verdict at "
                 f"alpha={settings['alpha']}, Holm over cells)", fontsize=10, y=1.0 + 0.35 / fig_height)
    fig.subplots_adjust(left=0.24, right=0.82, top=1 - 0.55 / fig_height, bottom=0.5 / fig_height)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
