"""Write workload.csv: one week of a seeded GPU batch workload (see greenplace.sim.synthetic).

Run from the repository root: .venv/bin/python examples/simulate/make_workload.py
The same seed always writes the same file, so the committed CSV can be checked by re-running.
"""

from __future__ import annotations

import datetime
import pathlib

from greenplace.sim import synthetic

SEED = 2020
START = datetime.datetime(2020, 3, 2, tzinfo=datetime.UTC)
END = datetime.datetime(2020, 3, 9, tzinfo=datetime.UTC)
JOBS_PER_DAY = 30

if __name__ == "__main__":
    path = pathlib.Path(__file__).with_name("workload.csv")
    rows = synthetic.generate(SEED, START, END, JOBS_PER_DAY)
    synthetic.write_csv(rows, path)
    print(f"wrote {len(rows)} jobs to {path}")
