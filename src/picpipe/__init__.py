"""picpipe: one authoritative photo pipeline (sources in, a verified library out).

Importing this package does no work; entry points live in ``picpipe.cli``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
