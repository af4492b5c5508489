"""The command line before Hydra (naslab.launch) and the config validation (naslab.validation): no torch,
no run dir; every refusal one line naming the setting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from naslab.errors import ConfigError
from naslab.launch import Command, composition_message, group_options, help_text, prepare, resume_command
from naslab.validation import validate_config

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def composed(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def fake_run(run_dir: Path, overrides: list[str], results: dict | None = None) -> Path:
    """A run dir as Hydra and the pipeline leave it: .hydra/{config,overrides}.yaml, maybe results.json."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 0\n")
    if results is not None:
        (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("evaluator.epochs=0", "evaluator.epochs=0 is not valid: it must be an integer >= 1"),
        ("search.batch_size=0", "search.batch_size=0 is not valid: it must be an integer >= 1"),
        ("evaluator.channels=abc", "evaluator.channels='abc' is not valid: it must be an integer >= 1"),
        ("seed=abc", "seed='abc' is not valid: it must be an integer"),
        ("train.epochs=-1", "train.epochs=-1 is not valid"),
        ("search.num_architectures=0", "search.num_architectures=0 is not valid"),
        ("evaluator.train_batches=1.5", "evaluator.train_batches=1.5 is not valid: it must be a number of batches"),
        ("evaluator.backend=spark", "evaluator.backend='spark' is not valid: it must be one of local, pool, ray"),
        ("threads=0", "threads=0 is not valid"),
        ("mode=nope", "mode='nope' is not valid: it must be one of search, train"),
        ("train.drop_path_prob=2", "train.drop_path_prob=2 is not valid: it must be a number in [0, 1]"),
        ("evaluator.epochs=true", "evaluator.epochs=True is not valid"),  # a bool is not an epoch count
    ],
)
def test_a_bad_value_is_one_line_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(composed(override))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


@pytest.mark.parametrize("override", ["strategy=darts strategy.order=3", "strategy=darts strategy.epochs=0"])
def test_strategy_values_are_checked_when_the_strategy_has_them(override: str) -> None:
    with pytest.raises(ConfigError, match=r"^strategy\.(order|epochs)="):
        validate_config(composed(*override.split()))


@pytest.mark.parametrize("group", ["experiment", "method", "strategy", "space", "evaluator", "dataset"])
def test_every_shipped_preset_is_valid(group: str) -> None:
    """The rules must not refuse what naslab ships (with and without debug=fast)."""
    for option in group_options(CONF)[group]:
        for extra in ([], ["debug=fast"]):
            validate_config(composed(f"{group}={option}", *extra))


def test_unknown_group_option_lists_the_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^strategy=nope: no such strategy; choose one of: darts, .*random"):
        prepare(["strategy=nope"], CONF)
    with pytest.raises(ConfigError, match=r"^space=bad: no such space"):  # each option of a sweep
        prepare(["-m", "space=micro_small,bad"], CONF)


def test_unknown_setting_is_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        prepare(["evaluator.epoch=3"], CONF)
    assert str(info.value).startswith("evaluator.epoch: no such setting") and "\n" not in str(info.value)


def test_composition_message_is_one_line_for_any_hydra_error() -> None:
    error = ValueError("Error merging override x=1\nsome detail\n    full_key: x")
    assert "\n" not in composition_message(error)


def test_a_valid_command_passes_through_unchanged() -> None:
    argv = ["strategy=random", "debug=fast", "logger=none", "hydra.run.dir=/tmp/x"]
    assert prepare(argv, CONF) == argv


def test_help_lists_user_groups_one_line_per_option_and_hides_internal_ones() -> None:
    text = help_text(CONF)
    lines = text.splitlines()
    for group in ("dataset", "space", "strategy", "evaluator", "experiment", "method", "logger", "debug"):
        assert f"  {group}" in lines
    assert "debug/strategy" not in text and "debug/dataset" not in text
    strategy_lines = [line for line in lines if line.strip().lstrip("*").startswith("nao_small ")]
    assert len(strategy_lines) == 1 and "Sciuto" in strategy_lines[0]
    assert any(line.startswith("   *nao_quick ") for line in lines)  # the default is marked
    assert all(len(line) <= 140 for line in lines)


def test_help_is_fast_and_imports_no_torch() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "run.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "Config groups" in proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "lightning" not in imported


# ------------------------------------------------------------------------------------------ resume


def test_resume_needs_a_run_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^resume=true needs hydra.run.dir="):
        prepare(["resume=true"], CONF)
    with pytest.raises(ConfigError, match=r"does not exist"):
        prepare(["resume=true", f"hydra.run.dir={tmp_path / 'missing'}"], CONF)
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConfigError, match=r"holds no naslab run \(no .hydra/config.yaml\)"):
        prepare(["resume=true", f"hydra.run.dir={tmp_path / 'plain'}"], CONF)


def test_resume_reuses_the_saved_overrides_and_keeps_hydra_dir(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path / "run", ["strategy=random", "debug=fast", f"hydra.run.dir={tmp_path / 'run'}"])
    command = resume_command(Command.parse(["resume=true", f"hydra.run.dir={run_dir}", "logger=csv", "threads=2"]))
    assert command.overrides == [
        "strategy=random",
        "debug=fast",
        "logger=csv",
        "threads=2",
        f"hydra.run.dir={run_dir}",
        "resume=true",
        "hydra.output_subdir=null",  # Hydra leaves the run's .hydra/ as it was
    ]


def test_resume_accepts_the_original_command_again(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path / "run", ["strategy=random", "evaluator.epochs=3"])
    command = resume_command(
        Command.parse(["strategy=random", "evaluator.epochs=3", f"hydra.run.dir={run_dir}", "resume=true"])
    )
    assert command.overrides[:2] == ["strategy=random", "evaluator.epochs=3"] and len(command.overrides) == 5


@pytest.mark.parametrize(
    ("override", "was"), [("evaluator.epochs=4", "the run has evaluator.epochs=3"), ("seed=1", "its default")]
)
def test_resume_refuses_a_change_of_what_the_run_computes(tmp_path: Path, override: str, was: str) -> None:
    run_dir = fake_run(tmp_path / "run", ["evaluator.epochs=3"])
    with pytest.raises(ConfigError, match=rf"^resume=true keeps the run's configuration: {override} .*{was}"):
        resume_command(Command.parse([override, f"hydra.run.dir={run_dir}", "resume=true"]))


def test_resume_of_a_finished_run_exits_0_and_says_so(tmp_path: Path, capsys) -> None:
    results = {"mode": "search_train", "status": "finished", "search": {"best_score": 0.5}, "final": {}}
    run_dir = fake_run(tmp_path / "run", [], results)
    with pytest.raises(SystemExit) as info:
        prepare([f"hydra.run.dir={run_dir}", "resume=true"], CONF)
    assert info.value.code == 0 and "finished already" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("results", "done"),
    [
        ({"status": "interrupted", "final": {"test_accuracy": 0.5}}, False),
        ({"mode": "search", "search": {"best_score": 0.1}}, True),  # a run from before results.json had a status
        ({"mode": "search_train", "search": {"best_score": 0.1}, "final": None}, False),
        ({"mode": "search", "search": {"best_score": 0.1}, "error": "RuntimeError: x"}, False),
    ],
)
def test_a_run_counts_as_finished_only_when_its_last_stage_is_there(tmp_path: Path, results: dict, done: bool) -> None:
    from naslab.records import finished

    assert finished(results) is done


# ---------------------------------------------------------------------------------------- genotype


def test_genotype_from_a_run_dir_brings_its_space_and_dataset(tmp_path: Path) -> None:
    (tmp_path / "genotype.json").write_text(
        json.dumps({"space": "micro", "genotype": {}, "choices": {"space": "micro_tiny", "dataset": "fashion_mnist"}})
    )
    argv = prepare(["mode=summary", f"genotype={tmp_path}"], CONF)
    assert "space=micro_tiny" in argv and "dataset=fashion_mnist" in argv
    argv = prepare(["mode=summary", f"genotype={tmp_path}", "dataset=digits"], CONF)  # the command wins
    assert "dataset=fashion_mnist" not in argv and "space=micro_tiny" in argv
    (tmp_path / "not_a_run").mkdir()
    with pytest.raises(ConfigError, match=r"no genotype.json there"):
        prepare(["mode=train", f"genotype={tmp_path / 'not_a_run'}"], CONF)


def test_a_new_run_in_a_dir_that_holds_a_run_is_refused(tmp_path: Path) -> None:
    run_dir = fake_run(tmp_path / "run", ["seed=1"], {"status": "finished"})
    with pytest.raises(ConfigError, match=r"holds a run already: add resume=true to continue it"):
        prepare(["seed=3", f"hydra.run.dir={run_dir}"], CONF)
    (tmp_path / "fresh").mkdir()  # an existing but empty dir is fine
    assert prepare([f"hydra.run.dir={tmp_path / 'fresh'}"], CONF) == [f"hydra.run.dir={tmp_path / 'fresh'}"]


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "hydra/launcher=joblib", "seed=0,1"],  # Hydra's own groups are Hydra's to check
        ["-m", "strategy=choice(nao,random)"],  # sweep functions
        ["hydra.mode=MULTIRUN", "strategy=nao,random"],
    ],
)
def test_valid_hydra_commands_pass(argv: list[str]) -> None:
    assert prepare(argv, CONF) == argv


def test_resume_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^resume=on is not valid: it must be true or false"):
        prepare(["resume=on", f"hydra.run.dir={tmp_path}"], CONF)


def test_a_safe_setting_is_replaced_whole_on_resume(tmp_path: Path) -> None:
    """logger=csv on a W&B run: the csv logger's node, not the W&B one with `_target_` swapped."""
    from omegaconf import OmegaConf

    from naslab.lifecycle import resumed_config

    saved = composed("logger=wandb", "seed=5")
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(saved, tmp_path / ".hydra" / "config.yaml")
    now = composed("logger=csv", "seed=5", "threads=2", "evaluator.epochs=9")  # epochs: not safe, the saved one wins
    resumed = resumed_config(now, tmp_path)
    assert OmegaConf.to_container(resumed.logger) == OmegaConf.to_container(now.logger)
    assert resumed.threads == 2 and resumed.resume is True and resumed.seed == 5
    assert resumed.evaluator.epochs == saved.evaluator.epochs
