"""Fixtures for the trust tests: synthetic detectors whose right answer is known, and blob images on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakelens.trust.synthetic import (
    blob_image,
    corner_biased_detector,
    padding_reader_detector,
    planted_patch_detector,
)

SIZE = (64, 64)


@pytest.fixture(autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    """The trust tests work on tiny tensors: threads only add OpenMP spin-waits on a shared machine (measured
    0.6 s with one thread vs 2.5–16 s with two for the same sweep under load). Restored after each test."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def planted():  # type: ignore[no-untyped-def]
    return planted_patch_detector(SIZE)


@pytest.fixture(scope="session")
def corner():  # type: ignore[no-untyped-def]
    return corner_biased_detector(SIZE)


@pytest.fixture(scope="session")
def padding():  # type: ignore[no-untyped-def]
    return padding_reader_detector(SIZE)


def save_blobs(folder: Path, n: int, size: tuple[int, int] = SIZE, masks: bool = True) -> tuple[Path, Path]:
    """``n`` blob images (and their masks) as PNG files in ``folder/img`` and ``folder/masks``."""
    img_dir, mask_dir = folder / "img", folder / "masks"
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(exist_ok=True)
    for i in range(n):
        img, m = blob_image(size, seed=i)
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(
            img_dir / f"blob{i}.png"
        )
        if masks:
            Image.fromarray(m.numpy().astype(np.uint8) * 255).save(mask_dir / f"blob{i}.png")
    return img_dir, mask_dir


@pytest.fixture(scope="session")
def blob_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_blobs(tmp_path_factory.mktemp("blobs"), 3)
