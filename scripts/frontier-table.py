"""The comparison table of scripts/bench-frontier.sh for one model folder DIR: DIR/all and
DIR/plain hold the two sweeps (frontier.csv and plan_NNN.yaml, one per solved budget) and
DIR/eval.md the measurements of every plan, all's plans first, each sweep in file order.

Prints one Markdown row per budget that both sweeps solved: what each plan stores and measures,
the differences (all minus plain), and which of the extra options the "all" plan takes.
Standard library only. Usage: python3 frontier-table.py DIR
"""

import csv
import re
import sys
from pathlib import Path


def ilp_points(sweep: Path) -> dict:
    with open(sweep / "frontier.csv", newline="") as f:
        return {row["plan"]: row for row in csv.DictReader(f) if row["kind"] == "ilp"}


def measured(folder: Path) -> dict:
    """(sweep, plan file) → the eval row's cells by column name."""
    lines = [line for line in (folder / "eval.md").read_text().splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, rows = cells[0], [c for c in cells[2:] if len(c) == len(cells[0])]
    order = [(kind, p.name) for kind in ("all", "plain") for p in sorted((folder / kind).glob("plan_*.yaml"))]
    if len(order) != len(rows):
        sys.exit(f"{folder}/eval.md: {len(rows)} rows for {len(order)} plans")
    return {key: dict(zip(header, row)) for key, row in zip(order, rows)}


def options_taken(plan: Path) -> str:
    """How many layers the plan keeps in float16, gives group scales or stores as E4M3."""
    blocks = plan.read_text().split("\n- component:")[1:]
    half = sum(1 for b in blocks if "protected: false" in b and re.search(r"w_bits:\n(?:\s*- \d+\n)*\s*- 16\n", b))
    groups = sum(1 for b in blocks if "w_group:" in b)
    fp8 = sum(1 for b in blocks if "w_fp8:" in b)
    return f"{half} f16, {groups} grouped, {fp8} E4M3"


def shrinkage(plan: Path) -> str:
    """The shrinkage the plan was solved at (prediction.shrink; absent: 0)."""
    found = re.search(r"^  shrink: ([0-9.eE+-]+)$", plan.read_text(), re.MULTILINE)
    return f"{float(found.group(1)):.2f}" if found else "0.00"


def main(folder: Path) -> None:
    runs = {kind: ilp_points(folder / kind) for kind in ("all", "plain")}
    values = measured(folder)
    both = sorted(set(runs["all"]) & set(runs["plain"]), key=lambda p: float(runs["all"][p]["budget"]))
    print("| budget MB | all: MB | bits | SQNR dB | PSNR dB | caption | plain: MB | bits | SQNR dB | PSNR dB | caption "
          "| Δ SQNR | Δ PSNR | shrink all / plain | all takes |")
    print("|" + "---:|" * 13 + "---|---|")
    worse = {"SQNR": [], "PSNR": []}
    for plan in both:
        cols = []
        for kind in ("all", "plain"):
            point, m = runs[kind][plan], values[(kind, plan)]
            cols += [f"{float(point['memory']) / 1e6:.3f}", f"{float(point['avg_bits']):.2f}", m["SQNR dB"],
                     m["PSNR dB"], m["caption"]]
        a, p = values[("all", plan)], values[("plain", plan)]
        d_sqnr = float(a["SQNR dB"]) - float(p["SQNR dB"])
        d_psnr = float(a["PSNR dB"]) - float(p["PSNR dB"])
        budget = float(runs["all"][plan]["budget"]) / 1e6
        for name, delta in (("SQNR", d_sqnr), ("PSNR", d_psnr)):
            if delta < 0:
                worse[name].append(f"{budget:.3f} MB ({delta:+.2f} dB)")
        taken = options_taken(folder / "all" / plan)
        shrunk = f"{shrinkage(folder / 'all' / plan)} / {shrinkage(folder / 'plain' / plan)}"
        print(f"| {budget:.3f} | " + " | ".join(cols) + f" | {d_sqnr:+.2f} | {d_psnr:+.2f} | {shrunk} | {taken} |")
    print()
    for name, budgets in worse.items():
        if budgets:
            print(f"- {name}: \"all\" below \"plain\" at {len(budgets)} of {len(both)} budgets: {', '.join(budgets)}.")
        else:
            print(f"- {name}: \"all\" at least as good as \"plain\" at every one of the {len(both)} budgets.")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
