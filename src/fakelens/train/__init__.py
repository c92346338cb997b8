"""Training and evaluation: the loop (seeded, resumable, AMP on CUDA), metrics in numpy, evaluation reports.

Import the parts from their modules (``fakelens.train.loop``, ``.metrics``, ``.evaluate``); this package
imports nothing heavy on its own.
"""
