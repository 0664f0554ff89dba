"""Sphinx configuration for the tcpref site.

Used as ``sphinx-build -c conf docs <outdir>``: the pages live in ``docs/`` and this
folder holds only configuration.  The site must build offline, so nothing here
fetches from the network (no intersphinx, no remote images, no CDN scripts).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# doctest_env is imported by the doctest setup code; tcpref by autodoc and examples.
sys.path[:0] = [str(HERE), str(ROOT)]

import doctest_env  # noqa: E402

# sphinx-autodoc-typehints calls an API that Sphinx 10 will remove; it still works,
# and the notice only buries the build's real output.
warnings.filterwarnings("ignore", message=r".*set_application.* is deprecated")

import tcpref  # noqa: E402

project = "tcpref"
author = "the tcpref developers"
copyright = "2026, the tcpref developers"
release = tcpref.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",  # after napoleon, as its documentation asks
    "sphinx_copybutton",
    "sphinx_design",
    "tcpref_diagrams",  # conf/tcpref_diagrams.py: diagrams drawn from the model
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**/README.md"]
nitpicky = True
# Types that the standard library documents but which we cannot link offline.
nitpick_ignore_regex = [
    (r"py:.*", r"(socket|_socket|collections\.abc|numbers|typing|contextlib)\..*"),
    (r"py:(class|exc|obj)", r"(OSError|EOFError|ValueError|TypeError|Any|int|str|bytes)"),
    (r"py:data", r"Ellipsis"),  # from tuple[Any, ...] in signatures
]

# -- MyST ----------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- doctest: one set of rules shared with the pytest runner ---------------------
doctest_default_flags = doctest_env.OPTIONFLAGS
doctest_global_setup = doctest_env.GLOBAL_SETUP
doctest_global_cleanup = doctest_env.GLOBAL_CLEANUP
doctest_test_doctest_blocks = ""  # only {doctest} blocks are tests, never plain >>> text

# -- autodoc -------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
typehints_fully_qualified = False
always_document_param_types = False

# -- HTML ----------------------------------------------------------------------
html_theme = "furo"
html_title = f"tcpref {release}"
html_static_path = ["_static"]  # conf/_static
html_css_files = ["tcpref.css"]

# Copying an example yields runnable code: prompts and output lines are dropped.
copybutton_prompt_text = r">>> |\.\.\.(?: |$)|\$ "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True
copybutton_remove_prompts = True


def setup(app: Any) -> dict[str, Any]:
    """Make skipped examples visible in the doctest builder's log."""
    from sphinx.ext.doctest import DocTestBuilder
    from sphinx.util import logging

    logger = logging.getLogger("tcpref.doctest")

    class ReportingDocTestBuilder(DocTestBuilder):  # type: ignore[misc]
        """The stock doctest builder, but a skipped example says so and why."""

        def skipped(self, node: Any) -> bool:
            skip = bool(super().skipped(node))
            if skip:
                where = f"{node.source}:{node.line}" if node.line else node.source
                logger.info("SKIPPED %s (%s)", where, doctest_env.skip_reason(node["skipif"]))
            return skip

    app.add_builder(ReportingDocTestBuilder, override=True)
    return {"parallel_read_safe": True}
