"""Sphinx configuration of the proxy-protocol documentation.

Pages are Markdown (MyST). The API reference is generated from the
docstrings: :mod:`ppdocs` (in ``_ext``) writes one page per public module of
the package into ``api/generated`` at every build, so modules added later
appear without editing anything here. Build with ``bash docs/build.sh``
(warnings are errors).

"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / '_ext'))
sys.path.insert(0, str(HERE.parent))

import proxyprotocol  # noqa: E402

project = 'proxy-protocol'
author = 'proxy-protocol developers'
copyright = 'proxy-protocol developers'
release = proxyprotocol.__version__
version = release

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.viewcode',
    'ppdocs',
]

source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
root_doc = 'index'
exclude_patterns = ['_build', '.venv', '.*', '**/.*', 'notes', 'README.md', '_ext', '_static']
templates_path: list[str] = []

myst_enable_extensions = ['colon_fence', 'deflist', 'fieldlist']
myst_heading_anchors = 3

# Google-style docstrings ("Args:", "Returns:", "Raises:", "Attributes:").
# Attributes become :ivar: fields so that they do not clash with the
# properties autodoc documents under the same names.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
napoleon_use_rtype = False

autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
autodoc_preserve_defaults = True
autodoc_class_signature = 'mixed'
add_module_names = False
python_use_unqualified_type_names = True

html_theme = 'furo'
html_title = f'proxy-protocol {release}'
html_static_path: list[str] = []
html_show_sourcelink = False
