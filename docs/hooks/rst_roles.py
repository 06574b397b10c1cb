"""MkDocs hook: show the docstrings' reStructuredText roles as plain code.

The library's docstrings are free prose that names other objects with Sphinx roles
(:func:`fit`, :class:`~rnp_pyro.errors.DataError`). Rendered as Markdown they
become the role's name followed by a code span; this hook drops the role and, as
Sphinx does, shortens a ``~``-prefixed path to its last component. A paragraph
ending in ``::`` before a literal block ends in ``:``, as reStructuredText shows it.
"""

import re

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):"
                   r"<code>(~?)([^<]*)</code>")


def _plain(match: re.Match) -> str:
    tilde, target = match.groups()
    shown = target.rsplit(".", 1)[-1] if tilde else target
    return f"<code>{shown}</code>"


_LITERAL = re.compile(r"::</p>(\s*<(?:pre|div)\b)")


def on_page_content(html: str, **kwargs) -> str:
    return _LITERAL.sub(r":</p>\1", _ROLE.sub(_plain, html))
