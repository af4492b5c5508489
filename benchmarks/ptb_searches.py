"""Short searches on the real Penn Treebank files with every strategy, and the published cells' sizes.

    python benchmarks/ptb_searches.py --data-dir /path/to/data [--budget debug|small]

For each of random + standalone, reinforce + shared (ENAS), nao + standalone and darts (first and
second order) it runs `python run.py` as a user would, in a temporary run dir, and prints the wall
time, the best search perplexity, the genotype found and the test perplexity of the (shrunk) final
training; then `mode=summary` parameter counts of the published cells on PTB and WikiText-2 with
the papers' sizes. `--budget debug` is `debug=fast` (tiny language models, 2 architectures);
`small` uses emb = hidden = 64 and a few more architectures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from preset_times import run_cli  # benchmarks/ is on sys.path when a script in it runs

SEARCHES = {
    "random + standalone": ["experiment=random_ptb", "search.num_architectures=2"],
    "reinforce + shared (ENAS)": ["experiment=enas_ptb"],
    "nao + standalone": ["experiment=nao_ptb"],
    "darts order 1": ["experiment=darts_ptb", "strategy.order=1"],
    "darts order 2": ["experiment=darts_ptb", "strategy.order=2"],
}
SMALL = [
    "dataset.search.network.emb_size=64",
    "dataset.search.network.hidden_size=64",
    "dataset.final.network.emb_size=64",
    "dataset.final.network.hidden_size=64",
    "search.num_architectures=4",
]
SUMMARIES = {
    "darts_ptb on PTB (emb 850)": ["dataset=ptb", "genotype=darts_ptb"],
    "nao_ptb on PTB (emb 850)": ["dataset=ptb", "genotype=nao_ptb"],
    "enas_ptb on PTB (emb 850)": ["dataset=ptb", "genotype=enas_ptb"],
    "enas_ptb on PTB (ENAS' hidden 748)": [
        "dataset=ptb",
        "genotype=enas_ptb",
        "dataset.final.network.emb_size=748",
        "dataset.final.network.hidden_size=748",
    ],
    "darts_ptb on WikiText-2 (emb 700)": ["dataset=wikitext2", "genotype=darts_ptb"],
}


def run(args: list[str]) -> tuple[float, dict]:
    seconds, done, results = run_cli(args)
    if results is None:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data", help="folder holding ptb/ and wikitext-2/ (paths.data_dir)")
    parser.add_argument("--budget", choices=("debug", "small"), default="debug")
    args = parser.parse_args()
    data = [f"paths.data_dir={Path(args.data_dir).resolve()}"]
    budget = ["debug=fast"] + (SMALL if args.budget == "small" else [])
    print(f"searches on real PTB ({args.budget} budget)")
    print(f"{'method':28s} {'seconds':>8s} {'evaluated':>9s} {'best ppl':>9s} {'test ppl':>9s}  genotype")
    for name, overrides in SEARCHES.items():
        seconds, results = run(overrides + budget + data)
        search, final = results["search"], results["final"]
        print(
            f"{name:28s} {seconds:8.1f} {search['num_evaluated']:9d} {search['best_perplexity']:9.1f} "
            f"{final['test_perplexity']:9.1f}  {results['genotype']}"
        )
    print("\nmode=summary, final sizes of the published cells")
    for name, overrides in SUMMARIES.items():
        _, results = run(["mode=summary", "space=rnn"] + overrides + data)
        print(f"{name:38s} {results['final']['params']:>12,d} parameters")


if __name__ == "__main__":
    main()
