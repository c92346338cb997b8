"""Seconds for each face's own verdict with maps on a 12-MP portrait (the bundled ``grace_hopper.jpg``
resized to 3000 × 4000), with the shipped ensemble; best of two runs after a warm-up.

Usage (compare two versions: point ``PYTHONPATH`` at each checkout's ``src``)::

    OMP_NUM_THREADS=1 python benchmarks/face_verdicts_speed.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import fakelens
from fakelens.data.faces import detect_faces
from fakelens.face_verdicts import face_verdicts
from fakelens.models import load_detector


def main() -> None:
    torch.set_num_threads(1)
    photo = Path(fakelens.__file__).parent / "assets" / "demo" / "grace_hopper.jpg"
    img = Image.open(photo).convert("RGB").resize((3000, 4000), Image.Resampling.BICUBIC)
    ens = load_detector("default")
    faces = detect_faces(np.asarray(img))
    face_verdicts(ens, img.crop((0, 0, 600, 600)), [], method="gradcam")  # warm-up
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        verdicts = face_verdicts(ens, img, faces, method="gradcam")
        best = min(best, time.perf_counter() - t)
    print(
        f"{fakelens.__file__}: {len(faces)} face(s), {best:.2f} s,",
        [round(v.fake_probability, 6) for v in verdicts],
    )


if __name__ == "__main__":
    main()
