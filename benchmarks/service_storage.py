"""What one upload costs the service's store, and how long its upload and report take.

Uploads one photo to the real app (FastAPI TestClient, SQLite and blob store in a temporary folder) with
tiny-cnn and tiny-vit: the maps lie on the photo's pixel grid whatever the model, so the bytes stored do not
depend on it. Prints the bytes the upload added to the data folder, each served file's size, and the seconds
the upload and its report took.

Usage::

    python benchmarks/service_storage.py PHOTO [--methods gradcam,hirescam] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from _common import output_path, write_json
from fastapi.testclient import TestClient

from fakelens.models import Ensemble, create_model
from fakelens.service import Settings, create_app
from fakelens.service.db import Database
from fakelens.service.keys import create_key


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photo", type=Path)
    ap.add_argument("--methods", default="gradcam,hirescam")
    ap.add_argument("--json", type=output_path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    photo = args.photo.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        settings = Settings(data_dir=data, robustness=False, report_faces=False, rate_per_minute=0.0)
        key = create_key(Database(settings.db_url), "bench")[1]
        h = {"X-API-Key": key}
        with TestClient(
            create_app(settings, Ensemble([create_model("tiny-cnn"), create_model("tiny-vit")]))
        ) as c:
            before = folder_bytes(data)
            t = time.perf_counter()
            r = c.post(
                "/v1/analyses",
                files={"image": (args.photo.name, photo)},
                data={"methods": args.methods},
                headers=h,
            )
            upload_s = time.perf_counter() - t
            r.raise_for_status()
            a = r.json()
            stored = folder_bytes(data) - before
            m = a["models"][0]
            method = args.methods.split(",")[0]
            served = {
                kind: len(c.get(m[kind][method], headers=h).content)
                for kind in ("heatmaps", "overlays", "maps")
            }
            t = time.perf_counter()
            c.get(a["links"]["report"], headers=h).raise_for_status()
            report_s = time.perf_counter() - t
    out = {
        "photo": str(args.photo),
        "photo_bytes": len(photo),
        "pixels": [a["image"]["width"], a["image"]["height"]],
        "models": len(a["models"]),
        "methods": args.methods.split(","),
        "stored_bytes": stored,
        "served_bytes_per_method": served,
        "upload_s": round(upload_s, 2),
        "report_s": round(report_s, 2),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        write_json(args.json, out, indent=2)


if __name__ == "__main__":
    main()
