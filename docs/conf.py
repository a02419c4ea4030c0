"""Sphinx configuration for the Flask-AccessTokens manual."""

from pallets_sphinx_themes import get_version

project = "Flask-AccessTokens"
copyright = "2025, the Flask-AccessTokens authors"
author = "the Flask-AccessTokens authors"
release, version = get_version("Flask-AccessTokens")

extensions = [
    "sphinx.ext.autodoc",
    "pallets_sphinx_themes",
]
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# No intersphinx: builds must not need the network.

exclude_patterns = ["_build"]

html_theme = "flask"
html_theme_options = {"index_sidebar_logo": False}
html_sidebars = {
    "index": ["project.html", "localtoc.html", "searchbox.html"],
    "**": ["localtoc.html", "relations.html", "searchbox.html"],
}
singlehtml_sidebars = {"index": ["project.html", "localtoc.html"]}
html_static_path = ["_static"]
html_title = f"Flask-AccessTokens Documentation ({version})"
html_show_sourcelink = False
