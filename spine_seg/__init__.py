"""spineseg: lumbar spine MRI study → graded degenerative findings (RSNA 2024 format)."""

from __future__ import annotations

__version__ = "0.1.0"
