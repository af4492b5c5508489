"""Entry point: `python run.py [overrides]`; `python run.py --help` lists the options.

naslab.launch checks the command line first (help, group options, resume, settings: a refusal is one
line and writes nothing); Hydra then composes the run and naslab.lifecycle runs it. torch is imported
only after that, so `--help` and a refused command answer at once.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from naslab.errors import UserError
from naslab.launch import prepare

CONF_DIR = Path(__file__).resolve().parent / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        from naslab.lifecycle import run_task  # torch and Lightning load here (a second or two)
    except KeyboardInterrupt:
        print("stopped before the run started: nothing was trained", file=sys.stderr)
        sys.exit(130)
    return run_task(cfg)


if __name__ == "__main__":
    try:
        sys.argv = [sys.argv[0], *prepare(sys.argv[1:], CONF_DIR)]
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    main()
