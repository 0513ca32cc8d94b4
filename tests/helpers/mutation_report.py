"""Mutation score per module from a finished ``mutmut run`` (read from ``mutants/**/*.meta``).

    python -m tests.helpers.mutation_report [--mutants mutants] [--json out.json] [--survivors]

Statuses are mutmut's own (``mutmut.stats.status_by_exit_code``). A mutant is *killed* when the
tests fail on it (killed, timeout, segfault), *survived* when they pass or when no test covers it
("no tests": nothing would notice), and *not run* otherwise (not checked, skipped, suspicious).
The score is killed / (killed + survived).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

KILLED = {"killed", "timeout", "segfault", "caught by type check"}
SURVIVED = {"survived", "no tests"}


def collect(mutants_dir: str) -> dict[str, dict]:
    """``{module: {"killed": n, "survived": n, "not_run": n, "survivors": [names]}}``."""
    from mutmut.stats import status_by_exit_code

    out: dict[str, dict] = {}
    for path in sorted(glob.glob(os.path.join(mutants_dir, "**", "*.py.meta"), recursive=True)):
        module = os.path.relpath(path, mutants_dir)[: -len(".meta")]
        with open(path, encoding="utf-8") as f:
            codes = json.load(f).get("exit_code_by_key", {})
        row = {"killed": 0, "survived": 0, "not_run": 0, "survivors": []}
        for name, code in sorted(codes.items()):
            status = status_by_exit_code[code]
            if status in KILLED:
                row["killed"] += 1
            elif status in SURVIVED:
                row["survived"] += 1
                row["survivors"].append(name)
            else:
                row["not_run"] += 1
        out[module] = row
    return out


def score(row: dict) -> float | None:
    done = row["killed"] + row["survived"]
    return row["killed"] / done if done else None


def table(rows: dict[str, dict]) -> str:
    lines = ["| module | mutants | killed | survived | not run | score |",
             "|---|---|---|---|---|---|"]
    total = {"killed": 0, "survived": 0, "not_run": 0}
    for module, row in rows.items():
        n = row["killed"] + row["survived"] + row["not_run"]
        s = score(row)
        lines.append(f"| `{module}` | {n} | {row['killed']} | {row['survived']} | "
                     f"{row['not_run']} | {'n/a' if s is None else f'{s:.1%}'} |")
        for k in total:
            total[k] += row[k]
    s = score(total)
    lines.append(f"| **all** | {sum(total.values())} | {total['killed']} | {total['survived']} "
                 f"| {total['not_run']} | **{'n/a' if s is None else f'{s:.1%}'}** |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mutants", default="mutants", help="mutmut's working folder")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.add_argument("--survivors", action="store_true", help="list the surviving mutants")
    a = p.parse_args(argv)
    rows = collect(a.mutants)
    if not rows:
        print(f"mutation_report: no mutmut results under {a.mutants!r}", file=sys.stderr)
        return 2
    print(table(rows))
    if a.survivors:
        for module, row in rows.items():
            for name in row["survivors"]:
                print(f"survived {module}: {name}")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
