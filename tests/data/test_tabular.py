"""Tabular data (scikit-learn's embedded wine): splits, standardisation on train rows only, and MLP runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_wine

from naslab.data.tabular import WineDataModule
from naslab.pipeline import run

RAW = torch.as_tensor(load_wine().data, dtype=torch.float32)


def raw_features(dm: WineDataModule, rows: list[int]) -> torch.Tensor:
    """Unstandardised features of rows of the train set (indices into train_source_indices)."""
    return RAW[torch.as_tensor(dm.train_source_indices[rows], dtype=torch.long)]


def all_batches(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


# --- splits ---------------------------------------------------------------------------------------
def test_wine_split_sizes_shapes_and_kind() -> None:
    dm = WineDataModule(batch_size=16, search_valid_size=0.2)
    assert dm.input_shape == (13,) and dm.num_classes == 3 and dm.kind == "tabular"  # before setup
    dm.setup()
    info = dm.describe()
    assert (info["train"], info["search_valid"], info["test"], info["kind"]) == (114, 28, None, "tabular")
    train, valid = set(dm.train_indices), set(dm.valid_indices)
    assert not train & valid and train | valid == set(range(142))
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 13) and x.dtype == torch.float32 and y.dtype == torch.long
    assert all_batches(dm.val_dataloader())[0].shape == (28, 13)
    with pytest.raises(RuntimeError, match="only for final training"):
        dm.test_dataloader()

    final = WineDataModule(phase="final", batch_size=16)
    final.setup()
    assert (final.describe()["train"], final.describe()["test"]) == (142, 36) and final.val_dataloader() == []
    x_test, y_test = all_batches(final.test_dataloader())
    assert x_test.shape == (36, 13) and torch.bincount(y_test).tolist() == [12, 14, 10]  # stratified 20 %


def test_fixed_test_split_is_disjoint_from_train_and_independent_of_split_seed() -> None:
    a, b = WineDataModule(phase="final", split_seed=0), WineDataModule(phase="final", split_seed=5)
    assert not set(a.test_source_indices) & set(a.train_source_indices)
    assert len(a.test_source_indices) + len(a.train_source_indices) == 178
    assert a.test_source_indices.tolist() == b.test_source_indices.tolist()


def test_split_seed_determines_search_valid() -> None:
    dms = [WineDataModule(split_seed=s) for s in (0, 0, 1)]
    for dm in dms:
        dm.setup()
    assert dms[0].valid_indices == dms[1].valid_indices and dms[0].train_indices == dms[1].train_indices
    assert dms[0].valid_indices != dms[2].valid_indices
    assert torch.equal(all_batches(dms[0].val_dataloader())[0], all_batches(dms[1].val_dataloader())[0])


# --- standardisation ------------------------------------------------------------------------------
def test_standardisation_uses_search_train_statistics_only() -> None:
    dm = WineDataModule(search_valid_size=0.2)
    dm.setup()
    train_raw = raw_features(dm, dm.train_indices)
    assert torch.allclose(dm.standardise.mean, train_raw.mean(0))
    assert torch.allclose(dm.standardise.std, train_raw.std(0, unbiased=False))
    all_train_raw = raw_features(dm, list(range(142)))  # search-train + search-valid
    assert not torch.allclose(dm.standardise.mean, all_train_raw.mean(0))
    x, _ = all_batches(dm.train_dataloader())
    assert torch.allclose(x.mean(0), torch.zeros(13), atol=1e-5) and torch.allclose(
        x.std(0, unbiased=False), torch.ones(13)
    )
    xv, _ = all_batches(dm.val_dataloader())
    expected = (raw_features(dm, dm.valid_indices) - train_raw.mean(0)) / train_raw.std(0, unbiased=False)
    assert torch.allclose(xv, expected, atol=1e-5)  # valid rows scaled with train statistics, in row order


def test_final_phase_scales_test_rows_with_train_statistics_no_leakage() -> None:
    dm = WineDataModule(phase="final")
    dm.setup()
    train_raw = RAW[torch.as_tensor(dm.train_source_indices)]
    test_raw = RAW[torch.as_tensor(dm.test_source_indices)]
    assert torch.allclose(dm.standardise.mean, train_raw.mean(0))
    assert not torch.allclose(dm.standardise.mean, torch.cat([train_raw, test_raw]).mean(0))
    x_test, _ = all_batches(dm.test_dataloader())
    assert torch.allclose(x_test, (test_raw - train_raw.mean(0)) / train_raw.std(0, unbiased=False), atol=1e-5)


def test_max_train_samples_caps_the_rows_and_their_statistics() -> None:
    dm = WineDataModule(max_train_samples=40, max_test_samples=10, phase="final")
    dm.setup()
    assert (dm.describe()["train"], dm.describe()["test"]) == (40, 10)
    assert torch.allclose(dm.standardise.mean, raw_features(dm, dm.train_indices).mean(0))


def test_cutout_is_refused_on_feature_vectors() -> None:
    with pytest.raises(ValueError, match="cutout=4 is an image augmentation; wine has feature vectors"):
        WineDataModule(cutout=4)


# --- the real config, end to end ------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["random", "reinforce"])
def test_mlp_search_and_final_training_on_wine(compose_cfg, tmp_path: Path, strategy: str) -> None:
    cfg = compose_cfg("space=mlp", "dataset=wine", f"strategy={strategy}", "evaluator=standalone", "debug=fast")
    results = run(cfg)  # about a second on 2 CPU cores
    assert results["dataset"] == "wine" and results["space"] == "mlp"
    assert 0.0 <= results["final"]["test_accuracy"] <= 1.0 and results["final"]["test_perplexity"] is None
    assert results["final"]["params"] > 0 and results["genotype"].endswith("-> linear")
    saved = json.loads((tmp_path / "run" / "genotype.json").read_text())
    assert saved["space"] == "mlp"
    archive = [json.loads(line) for line in (tmp_path / "run" / "archive.jsonl").read_text().splitlines()]
    assert len(archive) == 2


@pytest.mark.parametrize(("space", "name"), [("micro_small", "micro"), ("macro", "macro")])
def test_cell_spaces_refuse_tabular_data_with_one_line(compose_cfg, space: str, name: str) -> None:
    cfg = compose_cfg(f"space={space}", "dataset=wine", "strategy=random", "mode=search", "debug=fast")
    with pytest.raises(ValueError, match=f"space={name} builds image networks, but the dataset is tabular data") as err:
        run(cfg)
    assert "\n" not in str(err.value)
