"""Registry of the public datasets spineseg knows (URL, licence, citation, layout, checksums), kept as data.

Installed as ``spine_seg_external_data`` (see pyproject.toml) so it cannot clash with other packages.
"""

from __future__ import annotations

from .download import StderrProgress, default_dest, download_file, extract_archive, fetch
from .registry import (
    BASE_URL_ENV,
    ChecksumMismatch,
    Dataset,
    Download,
    DownloadError,
    ExternalDataError,
    FileSpec,
    GlobSpec,
    ManualDownloadRequired,
    Problem,
    Registry,
    RegistryError,
    UnknownDatasetError,
    UnsafeArchiveError,
    VerifyReport,
    get_dataset,
    load_registry,
    sha256_file,
    verify,
)

__all__ = [
    "BASE_URL_ENV",
    "ChecksumMismatch",
    "Dataset",
    "Download",
    "DownloadError",
    "ExternalDataError",
    "FileSpec",
    "GlobSpec",
    "StderrProgress",
    "ManualDownloadRequired",
    "Problem",
    "Registry",
    "RegistryError",
    "UnknownDatasetError",
    "UnsafeArchiveError",
    "VerifyReport",
    "default_dest",
    "download_file",
    "extract_archive",
    "fetch",
    "get_dataset",
    "load_registry",
    "sha256_file",
    "verify",
]
