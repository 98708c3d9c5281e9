"""Registry of the public datasets spineseg knows (URL, licence, citation, layout, checksums), kept as data.

Installed as ``spine_seg_external_data`` (see pyproject.toml) so it cannot clash with other packages.
"""
