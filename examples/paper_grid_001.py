"""Summarise the MNIST [784, X, Y, 10] heatmap of the MetaNCA poster (seed 001, Figure 2) from its extracted
text, so our grids can be set beside it: mean over the 100 cells, best, worst, cells >= 0.95.

The poster's figure survives only as text: ten rows of ten accuracies (rows Y, columns X; 100 model samples
per architecture, 20% random test split).  This reads every tab-separated line whose
fields 2-11 are ten such numbers (the first is the row label, a trailing one the colour bar's tick).

    python examples/paper_grid_001.py [../shared/seeds/001_*.txt]
"""

from __future__ import annotations

import glob
import json
import re
import sys
from pathlib import Path


def main(argv: list | None = None) -> int:
    here = Path(__file__).resolve().parents[1]
    paths = (sys.argv[1:] if argv is None else argv) or glob.glob(str(here.parent / "shared" / "seeds" / "001_*.txt"))
    if not paths:
        raise SystemExit("give the seed 001 text file (../shared/seeds/001_*.txt)")
    rows = []
    for line in Path(paths[0]).read_text().splitlines():
        fields = line.split("\t")  # row label, ten cells, then the colour bar's tick (if any)
        if len(fields) >= 11 and all(re.fullmatch(r"[01]\.\d+", f.strip()) for f in fields[1:11]):
            rows.append([float(f) for f in fields[1:11]])
    if len(rows) != 10:
        raise SystemExit(f"{paths[0]}: expected 10 heatmap rows of 10 accuracies, found {len(rows)}")
    flat = [v for r in rows for v in r]
    print(json.dumps({"source": Path(paths[0]).name, "cells": len(flat), "mean": round(sum(flat) / len(flat), 4),
                      "best": max(flat), "worst": min(flat), "cells_ge_095": sum(v >= 0.95 for v in flat)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
