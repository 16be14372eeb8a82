"""The structures a run contours: the catalogue, shaped by a site configuration file and narrowed
to a list of names (``--structures``, the panel's structure tree, the station's choice)."""

from __future__ import annotations

from pathlib import Path

from .catalogue import Catalogue, default_catalogue
from .site_config import apply_site_config, choose_structures, load_site_config, parse_structure_names


def structure_set(site_config: Path | str | None = None, names: str | None = None,
                  catalogue: Catalogue | None = None) -> Catalogue | None:
    """The catalogue of a run, or None for the whole catalogue. ``names``: comma- or
    semicolon-separated names or aliases; an unknown name is refused (DKOARError) before anything runs."""
    chosen = None
    if site_config is not None:
        chosen = apply_site_config(catalogue or default_catalogue(), load_site_config(site_config))
    if names is not None and names.strip():
        chosen = choose_structures(chosen or catalogue or default_catalogue(), parse_structure_names(names))
    return chosen
