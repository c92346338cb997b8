"""HTTP service: the analysis API, stored results, API keys, limits and the web page.

Install with ``pip install "fakelens[service]"`` and start with ``fakelens serve``; see :func:`create_app`.
Nothing here analyses images itself: :mod:`fakelens.analysis` does; this package admits, stores and
serves.
"""

from fakelens.service.app import create_app
from fakelens.service.config import Settings

__all__ = ["Settings", "create_app"]
