"""Strategies x seeds on a ground-truth table (Sciuto et al.'s protocol, without training anything), timed.

    python benchmarks/table_searches.py [--table ptb_rnn_small_e1 | <run dir>/groundtruth.jsonl] \
        [--space rnn_small] [--seeds 10] [--budget 8] [--strategies random reinforce nao]

Each (strategy, seed) is a `mode=search evaluator=table` run composed from the real config (no data is
read), written under one study dir; the study report (`naslab.studies.report`, the same as `mode=report` and the
`search_phase_table` preset's) is printed, then each strategy's wall time for all its seeds.
`python run.py -m experiment=search_phase_table` runs the same study as one Hydra multirun.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf, open_dict
from project_config import compose_cfg

from naslab.pipeline import run
from naslab.studies.report import write_report


def search(table: str, space: str, strategy: str, seed: int, budget: int, run_dir: Path) -> dict:
    overrides = [
        "experiment=search_phase_table",
        f"evaluator.path={table}",
        f"space={space}",
        f"strategy={strategy}",
        f"seed={seed}",
        f"search.num_architectures={budget}",
    ]
    cfg = compose_cfg(overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    results = run(cfg)
    # The choices Hydra records for a run of `run.py`, so that the report names methods as chosen
    # (`nao` and `nao_small` are both NAOStrategy, named "nao" in results.json).
    choices = {"hydra": {"runtime": {"choices": {"strategy": strategy, "space": space, "evaluator": "table"}}}}
    (run_dir / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(OmegaConf.create(choices), run_dir / ".hydra" / "hydra.yaml")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default="ptb_rnn_small_e1", help="groundtruth.jsonl or a packaged table's name")
    parser.add_argument("--space", default="rnn_small")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=8, help="architectures each search may evaluate")
    parser.add_argument("--strategies", nargs="+", default=["random", "reinforce", "nao_small"])
    parser.add_argument("--out", type=Path, default=None, help="keep the study (run dirs + report) here")
    args = parser.parse_args()
    study = args.out or Path(tempfile.mkdtemp(prefix="table_study_"))
    seconds = {}
    for strategy in args.strategies:
        start = time.perf_counter()
        for seed in range(args.seeds):
            search(args.table, args.space, strategy, seed, args.budget, study / strategy / f"seed{seed}")
        seconds[strategy] = time.perf_counter() - start
    report, _ = write_report(study, study, args.table)
    print(report.to_markdown())
    print(f"budget {args.budget} architectures per search; study in {study}")
    for strategy, s in seconds.items():
        print(f"{strategy:10s} {args.seeds} seeds in {s:.1f} s")


if __name__ == "__main__":
    main()
