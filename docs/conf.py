"""Sphinx configuration: the tutorial's notebooks (executed as the pages are built) and the API reference.

    pip install -e ".[docs]"
    python -m sphinx -W -b html docs OUT

``DEEPPROB_DOCS_EXECUTE=0`` builds without executing the notebooks (to check the pages quickly).
"""

import os

project = "deepprob"
author = "the deepprob developers"
copyright = "2026, the deepprob developers"

extensions = [
    "myst_nb",  # Markdown pages and notebooks, executed
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # the docstrings' Args: / Returns: sections
    "sphinx.ext.mathjax",
]
exclude_patterns = ["_build", "img", "Thumbs.db", ".DS_Store", "**/.ipynb_checkpoints"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# every notebook runs as the pages are built (none is committed with outputs); a cell that fails fails the build
nb_execution_mode = "force" if os.environ.get("DEEPPROB_DOCS_EXECUTE", "1") != "0" else "off"
nb_execution_timeout = 300
nb_execution_raise_on_error = True
nb_execution_in_temp = True  # a notebook that writes a file writes it in a temporary folder
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]

autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # dataclass fields: described once, in their class

html_theme = "alabaster"
html_title = "deepprob"
html_static_path = ["_static"]
html_js_files = ["check_images.js"]  # the page says how many of its images loaded (tests/test_docs.py)


def _shapes_as_text(app, what, name, obj, options, lines):
    """Docstrings write shapes as Python does, ``(N, *event_shape)``: a star there is not reST emphasis."""
    import re

    lines[:] = [re.sub(r"(?<=[(,\s])\*(?=[A-Za-z_])", r"\\*", line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _shapes_as_text)
