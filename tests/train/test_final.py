"""Final training's checkpoints: what a resumed run continues from."""

from __future__ import annotations

import os
from pathlib import Path

from naslab.train.final import resumable_checkpoint


def test_resume_takes_last_or_the_newest_epoch_when_the_link_dangles(tmp_path: Path) -> None:
    assert resumable_checkpoint(tmp_path) is None  # nothing saved yet: training starts over
    first, second = tmp_path / "epoch=0-step=16.ckpt", tmp_path / "epoch=1-step=32.ckpt"
    first.write_bytes(b"0")
    os.utime(first, (1, 1))
    second.write_bytes(b"1")
    (tmp_path / "last.ckpt").symlink_to(second.name)
    assert resumable_checkpoint(tmp_path) == tmp_path / "last.ckpt"
    second.unlink()  # a kill between Lightning removing a file and linking the next: last.ckpt dangles
    assert resumable_checkpoint(tmp_path) == first
