"""Sphinx configuration of energybench's documentation (built offline by scripts/docs.sh)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ENERGYBENCH_PROGRESS", "0")

from energybench.core.version import __version__  # noqa: E402

project = "energybench"
author = "the energybench developers"
release = version = __version__
copyright = "2026, the energybench developers"

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx_click"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"energybench {release}"
html_static_path = ["_static"]

autodoc_typehints = "description"
autodoc_member_order = "bysource"
nitpicky = True
# Types from other projects: there is no intersphinx here (the build runs offline).
nitpick_ignore_regex = [
    (r"py:class", r"(torch|numpy|np|pathlib|os|click|collections\.abc|typing)\..*"),
    (r"py:class", r"(Path|Tensor|nn\.Module|LabeledImages|LoadedModel)"),
]
smartquotes = False  # keep "--data" as two hyphens (command-line help is shown as written)
