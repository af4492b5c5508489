"""What `run.py` does with the command line before Hydra runs the task (no torch import here).

Hydra makes the run dir and writes `.hydra/` before the task starts, so anything that must write
nothing when it refuses, or must be fast, happens here on the raw arguments:

- `--help` / `-h`: naslab's help (every group's options, one line each), without importing torch.
- group options: `strategy=nope` is one line listing the options, not Hydra's multi-line message.
- `resume=true`: the run dir must hold a run; a finished run says so and exits 0; the saved
  overrides (`.hydra/overrides.yaml`) are reused, and a new override may only change what is safe to
  change on resume (`RESUME_SAFE`); `.hydra/` is left as the first run wrote it.
- `genotype=<run dir>` with mode=train / summary / export: the genotype's space and dataset choices
  (recorded in genotype.json) unless the command names them.
- a single run's config is composed and validated (naslab.validation), so a bad value is one line
  before any run dir exists.
- a single run's dir must be writable (a read-only or foreign dir, a full disk): probed with a temporary
  file, one line before Hydra writes `.hydra/` (where it would fail with a traceback) or anything trains.

Every refusal raises `UserError`; `run.py` prints it as one line.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from naslab.errors import ConfigError, RunDirWriteError, UserError
from naslab.records import describe_finished, finished, genotype_file, read_json

# Settings a resumed run may change: where and how it runs and logs, never what it computes.
RESUME_SAFE = (
    "logger",
    "threads",
    "evaluator.backend",
    "evaluator.workers",
    "evaluator.ray_address",
    "evaluator.max_retries",
    "evaluator.cpus_per_trial",
    "evaluator.gpus_per_trial",
    "paths.data_dir",
    "dataset.datamodule.num_workers",
    "trainer.accelerator",
    "trainer.devices",
    "hydra",
    "resume",
)
# Config groups users choose from; the debug/* groups are chosen by `debug=` itself.
HIDDEN_GROUPS = ("debug/strategy", "debug/dataset", "debug/experiment", "hydra")
GENOTYPE_MODES = ("train", "summary", "export")
TRUE = ("true", "True")
FALSE = ("false", "False")
# Hydra's flags that take a value in the next argument.
_FLAGS_WITH_VALUE = (
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--info",
    "-i",
    "--experimental-rerun",
    "--shell-completion",
    "-sc",
)


@dataclass
class Command:
    """The command line split into Hydra's flags and the overrides (`key=value`, `group=option`)."""

    flags: list[str]
    overrides: list[str]

    @classmethod
    def parse(cls, argv: list[str]) -> Command:
        flags: list[str] = []
        overrides: list[str] = []
        take_value = False
        for arg in argv:
            if take_value:
                flags.append(arg)
                take_value = False
            elif arg.startswith("-"):
                flags.append(arg)
                take_value = arg in _FLAGS_WITH_VALUE and "=" not in arg
            else:
                overrides.append(arg)
        return cls(flags, overrides)

    @property
    def multirun(self) -> bool:
        return "-m" in self.flags or "--multirun" in self.flags or self.get("hydra.mode") == "MULTIRUN"

    @property
    def custom_config(self) -> bool:
        return any(f.split("=")[0] in _FLAGS_WITH_VALUE[:6] for f in self.flags)

    def get(self, key: str) -> str | None:
        """The value the command gives `key` (the last one wins, as in Hydra), or None."""
        value = None
        for override in self.overrides:
            name, sep, rest = override.lstrip("+~").partition("=")
            if sep and name == key:
                value = rest
        return value

    def argv(self) -> list[str]:
        return [*self.flags, *self.overrides]


def override_key(override: str) -> str:
    return override.lstrip("+~").partition("=")[0]


def prepare(argv: list[str], conf_dir: Path) -> list[str]:
    """The arguments Hydra should see, or a UserError; `--help` and finished resumes exit here."""
    command = Command.parse(argv)
    if "--help" in command.flags or "-h" in command.flags:
        try:
            print(help_text(conf_dir))
        except BrokenPipeError:  # `python run.py --help | head`
            pass
        raise SystemExit(0)
    introspection = ("--hydra-help", "--cfg", "--info", "--version", "--shell-completion", "--resolve")
    if any(f.startswith(introspection) or f in ("-c", "-i", "-sc") for f in command.flags):
        return command.argv()  # Hydra's own introspection: nothing runs, no run dir is needed
    if not command.custom_config and command.get("hydra.searchpath") is None:
        check_group_options(command, conf_dir)
    resume = command.get("resume")
    if resume is not None and resume not in TRUE + FALSE:
        raise ConfigError(f"resume={resume} is not valid: it must be true or false")
    if resume in TRUE and not command.multirun:
        command = resume_command(command)
    elif not command.multirun:
        refuse_taken_run_dir(command)
    command = genotype_choices(command)
    if not command.multirun:
        check_run_dir_writable(command)
    if not command.multirun and not command.custom_config:
        validate_composed(command, conf_dir)
    return command.argv()


# ---------------------------------------------------------------------------------------------- help


def _first_line(path: Path) -> str:
    """The first sentence of a config file's leading comment (its one-line description)."""
    text: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("# @package"):
            continue
        if not line.startswith("#"):
            break
        text.append(line.lstrip("# ").strip())
    joined = " ".join(text)
    # the first sentence: a full stop before a capital, not the one of "Sec. 4", "et al. 2018" or "e.g. X"
    sentence = re.split(r"(?<!Sec)(?<!al)(?<!Fig)(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z])", joined, maxsplit=1)[0]
    sentence = sentence.rstrip(" .:;,")
    return sentence if len(sentence) <= 100 else sentence[:97].rstrip() + "..."


def group_options(conf_dir: Path) -> dict[str, list[str]]:
    """Every user-facing config group and its options (file names without .yaml), sorted."""
    groups: dict[str, list[str]] = {}
    for path in sorted(conf_dir.rglob("*.yaml")):
        group = path.parent.relative_to(conf_dir).as_posix()
        if group == "." or (group in HIDDEN_GROUPS or group.startswith("debug/")) and group != "hydra/launcher":
            continue
        groups.setdefault(group, []).append(path.stem)
    return groups


def _defaults(conf_dir: Path) -> dict[str, str]:
    config = yaml.safe_load((conf_dir / "config.yaml").read_text())
    chosen: dict[str, str] = {}
    for entry in config.get("defaults", []):
        if isinstance(entry, dict):
            for group, option in entry.items():
                if isinstance(option, str) and "$" not in option:
                    chosen[group.removeprefix("optional ")] = option
    return chosen


def help_text(conf_dir: Path) -> str:
    defaults = _defaults(conf_dir)
    lines = [
        "naslab: neural architecture search; a run is dataset x space x strategy x evaluator, composed by Hydra.",
        "",
        "usage: python run.py [group=option ...] [key=value ...]",
        "       python run.py strategy=darts space=micro_small          one search + final training",
        "       python run.py -m seed=0,1,2 strategy=nao,random          a sweep: one run per combination",
        "       python run.py hydra.run.dir=<run dir> resume=true         continue a stopped run",
        "",
        "Config groups (group=option; * marks the default):",
    ]
    for group, options in group_options(conf_dir).items():
        lines.append(f"  {group}")
        width = max(len(o) for o in options)
        for option in options:
            mark = "*" if defaults.get(group) == option else " "
            description = _first_line(conf_dir / group / f"{option}.yaml")
            lines.append(f"   {mark}{option:<{width}}  {description}")
    lines += [
        "",
        "Settings (key=value): mode=search|train|search_train|summary|groundtruth|ranking|report|export, seed=0,",
        "  threads=N (torch threads), resume=true, genotype=<published name | genotype.json | run dir>,",
        "  search.num_architectures=N, evaluator.epochs=N, train.epochs=N, logger=wandb|csv|none, debug=fast",
        "",
        "Every setting with its value: python run.py --cfg job [overrides]; Hydra's own flags: --hydra-help.",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- group options


def check_group_options(command: Command, conf_dir: Path) -> None:
    """`group=option` names an existing option file (each option of a sweep `a,b` too)."""
    for override in command.overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        group_dir = conf_dir / key
        if not sep or not group_dir.is_dir() or key.startswith("hydra") or value in ("", "null") or "(" in value:
            continue  # Hydra's own groups (hydra/launcher=joblib) and sweep functions (choice(...)) are Hydra's
        options = sorted(p.stem for p in group_dir.glob("*.yaml"))
        values = [v.strip() for v in value.split(",")] if command.multirun else [value]
        for option in values:
            if option not in options:
                raise ConfigError(f"{key}={option}: no such {key}; choose one of: {', '.join(options)}")


# ------------------------------------------------------------------------------------------- resume


def is_resume_safe(key: str) -> bool:
    return any(key == safe or key.startswith(safe + ".") or key.startswith(safe + "/") for safe in RESUME_SAFE)


def resume_command(command: Command) -> Command:
    """The command that continues the run in `hydra.run.dir` exactly as it was configured."""
    given = command.get("hydra.run.dir")
    if not given:
        raise ConfigError("resume=true needs hydra.run.dir=<the dir of the run to continue>")
    run_dir = Path(given)
    if not run_dir.is_dir():
        raise ConfigError(f"resume=true: hydra.run.dir={given} does not exist; give the dir of the run to continue")
    saved_overrides = run_dir / ".hydra" / "overrides.yaml"
    if not (run_dir / ".hydra" / "config.yaml").is_file() or not saved_overrides.is_file():
        raise ConfigError(
            f"resume=true: {given} holds no naslab run (no .hydra/config.yaml); give the dir of the run to continue"
        )
    results = read_json(run_dir / "results.json")
    if finished(results):
        assert results is not None
        print(describe_finished(run_dir, results))
        raise SystemExit(0)
    try:
        saved = [str(o) for o in yaml.safe_load(saved_overrides.read_text()) or []]
    except yaml.YAMLError as err:
        raise UserError(f"resume=true: {saved_overrides} is not readable YAML ({err}); cannot resume") from None
    kept = [o for o in saved if override_key(o) not in ("resume", "hydra.run.dir")]
    new: list[str] = []
    for override in command.overrides:
        key = override_key(override)
        if key in ("resume", "hydra.run.dir") or override in kept:
            continue
        if not is_resume_safe(key):
            before = next((o for o in kept if override_key(o) == key), None)
            was = f" (the run has {before})" if before else " (the run used its default)"
            raise ConfigError(
                f"resume=true keeps the run's configuration: {override} would change it{was}; on resume only "
                f"{', '.join(RESUME_SAFE[:-2])} may change"
            )
        new.append(override)
    # hydra.output_subdir=null: Hydra leaves the run's .hydra/ (config, overrides) as the first run wrote it.
    tail = [f"hydra.run.dir={given}", "resume=true", "hydra.output_subdir=null"]
    return Command(command.flags, [*kept, *new, *tail])


def refuse_taken_run_dir(command: Command) -> None:
    """A new run in a dir that holds a run would overwrite its .hydra/ and results.json: refused."""
    given = command.get("hydra.run.dir")
    if not given:
        return
    run_dir = Path(given)
    if any((run_dir / name).exists() for name in (".hydra/config.yaml", "results.json", "archive.jsonl")):
        raise ConfigError(
            f"hydra.run.dir={given} holds a run already: add resume=true to continue it, or choose another dir"
        )


PROBE_BYTES = 4096  # a block: on a full disk even this fails, where creating an empty file may not


def check_run_dir_writable(command: Command) -> None:
    """The run dir (`hydra.run.dir`, else the default's `outputs/`), or the nearest dir above it that
    exists, takes a new file: a temporary one of a block, written and removed, so a refusal leaves
    nothing. Permissions are probed by writing, not with os.access, which root and some file systems
    (sysfs, network mounts) answer wrongly."""
    given = command.get("hydra.run.dir")
    target = Path(given) if given else Path("outputs")
    probe = target
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    then = "or choose another hydra.run.dir"
    if not probe.is_dir():
        raise RunDirWriteError(target, f"{probe} is a file, not a dir", errno.ENOTDIR, directory=probe, then=then)
    try:
        fd, name = tempfile.mkstemp(dir=probe, prefix=".naslab-write-test-")
        try:
            os.write(fd, b"\0" * PROBE_BYTES)
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError as err:
        where = "" if probe == target else f" (in {probe})"
        reason = f"{err.strerror or err}{where}"
        raise RunDirWriteError(target, reason, err.errno, directory=probe, then=then) from None


# ------------------------------------------------------------------------------------------ genotype


def genotype_choices(command: Command) -> Command:
    """mode=train/summary/export with a genotype from a run: its space and dataset, unless the command
    (or an experiment preset) chooses them."""
    ref, mode = command.get("genotype"), command.get("mode")
    if not ref or mode not in GENOTYPE_MODES or command.get("experiment") or command.multirun:
        return command
    path = genotype_file(ref)
    if path is None:
        return command
    if not path.is_file():
        raise ConfigError(
            f"genotype={ref}: no genotype.json there; give a run dir, a genotype.json or a published name"
        )
    data = read_json(path)
    if data is None:
        raise ConfigError(f"genotype={ref}: {path} is not readable JSON")
    choices = data.get("choices") or {}
    added = [
        f"{group}={choices[group]}" for group in ("space", "dataset") if choices.get(group) and not command.get(group)
    ]
    return Command(command.flags, [*command.overrides, *added])


# ---------------------------------------------------------------------------------------- validation


def validate_composed(command: Command, conf_dir: Path) -> None:
    """Composes the run's config as Hydra will (without Hydra's own settings) and validates it."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from naslab.validation import validate_config

    overrides = [o for o in command.overrides if not override_key(o).startswith("hydra")]
    try:
        with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(composition_message(err)) from None
    validate_config(cfg)
    if cfg.mode in ("search", "search_train"):
        # A strategy that cannot run in the search its evaluator needs: one line before Hydra writes a run dir.
        # (It imports the strategy's class, so torch: only for a run, never for --help.)
        from naslab.stages.build import check_strategy_fits_search

        check_strategy_fits_search(cfg)


def composition_message(err: BaseException) -> str:
    """Hydra's multi-line composition error as one line that names the setting."""
    texts = [str(err)]
    cause = err.__cause__ or err.__context__
    while cause is not None and len(texts) < 4:
        texts.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    joined = " ".join(texts)
    unknown = re.search(r"Could not override '([^']+)'", joined) or re.search(r"Key '([^']+)' is not in struct", joined)
    if unknown:
        key = re.search(r"full_key: (\S+)", joined)
        name = key.group(1) if key else unknown.group(1)
        return f"{name}: no such setting (a typo? `python run.py --cfg job` lists them; +{name}=... adds a new one)"
    lines = [line.strip() for text in texts for line in text.splitlines() if line.strip()]
    return " ".join(dict.fromkeys(lines))
