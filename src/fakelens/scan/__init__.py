"""Batch scanning of image collections into a resumable Parquet table, on one machine or on Ray.

``sources`` lists what to scan, ``decode`` reads and hashes files, ``process`` runs the model, ``schema``
fixes the columns, ``store`` owns the output folder, ``local`` and ``distributed`` are the two pipelines and
``run`` ties them together. Needs the ``scan`` extra (pyarrow); ``--ray`` needs the ``ray`` extra.
"""

from fakelens.scan.process import ScanSettings
from fakelens.scan.run import ScanSummary, scan
from fakelens.scan.sources import list_sources

__all__ = ["ScanSettings", "ScanSummary", "list_sources", "scan"]
