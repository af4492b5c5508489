"""A run's records on disk, shared by the command line (no torch) and the pipeline: atomic writes,
tolerant JSON reads, whether a results.json says its run finished, and where a `genotype=` value's
genotype.json is."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename: a run killed while writing
    leaves the previous file (or none), never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file's content, or None when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def genotype_file(ref: str) -> Path | None:
    """The genotype.json a `genotype=` value points to (a run dir holds one), or None for a published name."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path / "genotype.json"
    return path if path.suffix == ".json" or path.exists() else None


def finished(results: dict[str, Any] | None) -> bool:
    """Whether a results.json says its run completed (runs from before `status` existed: no error and
    the mode's last stage present)."""
    if not results:
        return False
    if "status" in results:
        return results["status"] == "finished"
    if results.get("error"):
        return False
    mode = results.get("mode")
    last_stage = {"search": "search", "train": "final", "search_train": "final", "summary": "final"}
    return bool(results.get(last_stage.get(str(mode), "genotype")))


def describe_finished(run_dir: Path, results: dict[str, Any]) -> str:
    final = results.get("final") or {}
    search = results.get("search") or {}
    parts = [f"mode={results.get('mode')}"]
    if search.get("best_score") is not None:
        parts.append(f"best search score {search['best_score']:.4f}")
    if final.get("test_accuracy") is not None:
        parts.append(f"test accuracy {final['test_accuracy']:.4f}")
    if final.get("test_perplexity") is not None:
        parts.append(f"test perplexity {final['test_perplexity']:.2f}")
    return f"{run_dir} finished already ({', '.join(parts)}); nothing to resume, every record is unchanged"
