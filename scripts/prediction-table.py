"""The table of scripts/bench-prediction.sh for one model folder DIR: DIR/additive and DIR/fitted
hold the same sweep solved without and with --prediction-fit (frontier.csv and plan_NNN.yaml),
DIR/eval.md the held-out measurements of the fitted sweep's plans in file order.

Prints one Markdown row per budget (predicted, additive and fitted, against measured, for each
metric the fit has a line for) and the median and worst absolute error of both predictions.
Standard library only. Usage: python3 prediction-table.py DIR METRIC [METRIC...] (SQNR, PSNR)
"""

import csv
import statistics
import sys
from pathlib import Path


def ilp_points(sweep: Path) -> dict:
    with open(sweep / "frontier.csv", newline="") as f:
        return {row["plan"]: row for row in csv.DictReader(f) if row["kind"] == "ilp"}


def measured(folder: Path, plans: list) -> dict:
    """Plan file → the eval row's cells by column name."""
    lines = [line for line in (folder / "eval.md").read_text().splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, rows = cells[0], [c for c in cells[2:] if len(c) == len(cells[0])]
    if len(plans) != len(rows):
        sys.exit(f"{folder}/eval.md: {len(rows)} rows for {len(plans)} plans")
    return {plan: dict(zip(header, row)) for plan, row in zip(plans, rows)}


def main(folder: Path, metrics: list) -> None:
    additive, fitted = ilp_points(folder / "additive"), ilp_points(folder / "fitted")
    plans = sorted(fitted)
    for plan in plans:
        # The fit moves predictions, not plans: both sweeps must have chosen the same sizes.
        if abs(float(additive[plan]["memory"]) - float(fitted[plan]["memory"])) > 0.5:
            sys.exit(f"{folder}: {plan} differs between the additive and the fitted sweep")
    values = measured(folder, plans)
    column = {"SQNR": "sqnr_db", "PSNR": "psnr_db"}
    head = "| budget bits | bits | MB |"
    for m in metrics:
        head += f" {m} measured | additive | fitted |"
    print(head)
    print("|" + "---:|" * (3 + 3 * len(metrics)))
    errors = {(m, kind): [] for m in metrics for kind in ("additive", "fitted")}
    for plan in plans:
        point = fitted[plan]
        row = f"| {float(point['budget']):.2f} | {float(point['avg_bits']):.2f} | {float(point['memory']) / 1e6:.3f} |"
        for m in metrics:
            got = float(values[plan][f"{m} dB"])
            was, now = float(additive[plan][column[m]]), float(point[column[m]])
            errors[(m, "additive")].append(abs(was - got))
            errors[(m, "fitted")].append(abs(now - got))
            row += f" {got:.2f} | {was:.2f} ({was - got:+.2f}) | {now:.2f} ({now - got:+.2f}) |"
        print(row)
    print()
    for m in metrics:
        for kind in ("additive", "fitted"):
            e = errors[(m, kind)]
            print(f"- {m}, {kind}: median |error| {statistics.median(e):.2f} dB, worst {max(e):.2f} dB over {len(e)} plans.")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
