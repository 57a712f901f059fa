"""autoenhance-mirror: a local SQL copy of Autoenhance.ai images."""

from __future__ import annotations

__version__ = "0.1.0"
