"""Small corpora and tiny checkpoints for the scan tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from fakelens.models import Ensemble, create_model, save_checkpoint

SIZES = [(48, 64), (90, 40), (33, 77), (64, 64), (120, 50), (40, 100), (57, 57), (80, 30), (70, 95)]


def make_corpus(root: Path, n: int = len(SIZES), *, bad: bool = True, seed: int = 0) -> list[Path]:
    """``n`` small photos-like images (PNG and JPEG, some in a sub-folder) and, with ``bad``, three files
    that cannot be read as images; returns the good ones."""
    rng = np.random.default_rng(seed)
    good = []
    for i in range(n):
        h, w = SIZES[i % len(SIZES)]
        base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)
        path = root / ("sub" if i % 3 == 0 else "") / f"img{i:03d}.{'png' if i % 2 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        good.append(path)
    if bad:
        (root / "notes.png").write_text("not an image at all")
        (root / "empty.jpg").write_bytes(b"")
        data = good[1].read_bytes()
        (root / "sub" / "cut.png").write_bytes(data[: len(data) // 2])
    (root / "readme.txt").write_text("ignored: not an image suffix")
    return good


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    make_corpus(root)
    return root


@pytest.fixture(scope="session")
def cnn_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CNN saved as a checkpoint, so worker processes and Ray actors load it by path."""
    return save_checkpoint(create_model("tiny-cnn", seed=3), tmp_path_factory.mktemp("ckpt") / "tiny-cnn")


@pytest.fixture(scope="session")
def ensemble_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ens = Ensemble([create_model("tiny-cnn", seed=1), create_model("tiny-vit", seed=2)], weights=[3, 1])
    return save_checkpoint(ens, tmp_path_factory.mktemp("ckpt") / "ensemble")


def assert_same_rows(a: pa.Table, b: pa.Table, *, rel: float = 1e-5) -> None:
    """Same schema, same rows in the same order; floats equal to ``rel`` (batching may change the last bits
    of a float from one pipeline to another), everything else exactly."""
    assert a.schema == b.schema
    assert a.num_rows == b.num_rows
    for ra, rb in zip(a.to_pylist(), b.to_pylist(), strict=True):
        assert ra.keys() == rb.keys()
        for k, va in ra.items():
            vb = rb[k]
            if isinstance(va, float) and isinstance(vb, float):
                assert va == pytest.approx(vb, rel=rel, abs=1e-7), (ra["path"], k)
            else:
                assert va == vb, (ra["path"], k)


def rows_by_path(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {r["path"]: r for r in table.to_pylist()}
