"""The blind test's results for people: a small plot (share preferring each side, 95 % Wilson
interval, n) and the table and CSV behind it. Labels are revealed here and only here."""

from __future__ import annotations

import csv
import io

from dpexplorer.app.blindtest.pairs import QUESTIONS, side_label
from dpexplorer.app.blindtest.stats import COLUMNS, Result, table_rows

_SHORT_QUESTION = {"closer": "closer to the original", "realism": "looks real"}


def results_table(results: list[Result]) -> dict:
    """{"headers": COLUMNS, "data": rows}: the value a Gradio Dataframe shows and the API returns."""
    return {"headers": list(COLUMNS), "data": table_rows(results, side_label)}


def results_csv(results: list[Result]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(table_rows(results, side_label))
    return out.getvalue().encode("utf-8")


def results_figure(results: list[Result]):
    """One row per pair × quality × question: the share preferring side A (left of the row's label)
    with its Wilson interval; 0.5 is 'no preference'. A matplotlib Figure (no pyplot: no global
    state shared between the server's threads)."""
    from matplotlib.figure import Figure

    rows = max(1, len(results))
    fig = Figure(figsize=(7.5, 1.2 + 0.45 * rows), layout="constrained")
    ax = fig.add_subplot()
    if not results:
        ax.text(0.5, 0.5, "no answers yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    ys = list(range(len(results)))[::-1]  # first result on top
    for y, r in zip(ys, results):
        lo, hi = r.a_interval
        ax.errorbar(r.a_share, y, xerr=[[r.a_share - lo], [hi - r.a_share]], fmt="o", color="C0", capsize=3)
        ax.annotate(f"n={r.n}", (1.0, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8,
                    annotation_clip=False)
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=0.8)
    ax.set_yticks(ys, [f"{side_label(r.side_a)} vs {side_label(r.side_b)}\nq{r.quality}, "
                       f"{_SHORT_QUESTION.get(r.question, r.question)}" for r in results], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.6, len(results) - 0.4)
    ax.set_xlabel("share preferring the first side (95 % Wilson interval)")
    ax.set_title("Blind test: " + " / ".join(QUESTIONS.values()), fontsize=9)
    return fig
