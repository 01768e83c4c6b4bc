"""Passwords out of any text that may hold a connection string, before it is printed or raised.

One helper for every form a credential travels in here: a URL's ``user:password@`` part (any
scheme: SQLAlchemy URLs, ``https://``, ``s3://``), ``password=`` pairs (libpq ``key=value``
DSNs, URL query strings, ODBC ``PWD=``) and JSON ``"password": "..."`` (Airflow connections
given as JSON). It works on whole messages too, so an exception that quotes a URL can be
printed through it. ``RedactingConsole`` is the command line's ``rich`` console with it applied.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console

MASK = "***"

# scheme://user:password@  -> scheme://user:***@   (the password runs up to the '@')
_URL_PASSWORD = re.compile(
    r"(?P<keep>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s'\"]*:)(?P<secret>[^@\s'\"]+)(?=@)"
)
# password=secret, password='se cret', PWD={secret} (libpq, query strings, ODBC)
_PAIR_PASSWORD = re.compile(
    r"(?P<keep>\b\w*(?:password|passwd|pwd)\s*=\s*)"
    r"(?P<secret>'(?:[^'\\]|\\.)*'|\{[^}]*\}|[^\s&;,'\")]+)",
    re.IGNORECASE,
)
# "password": "secret" (JSON)
_JSON_PASSWORD = re.compile(
    r"(?P<keep>[\"']\w*(?:password|passwd|pwd)[\"']\s*:\s*)(?P<secret>\"(?:[^\"\\]|\\.)*\"|'[^']*')",
    re.IGNORECASE,
)


def redact(value: Any) -> str:
    """``value`` as text with every password it holds replaced by ``***``."""
    if value is None:
        return ""
    render = getattr(value, "render_as_string", None)  # a SQLAlchemy URL object
    text = render(hide_password=True) if callable(render) else str(value)
    text = _URL_PASSWORD.sub(lambda m: f"{m['keep']}{MASK}", text)
    text = _JSON_PASSWORD.sub(lambda m: f'{m["keep"]}"{MASK}"', text)
    return _PAIR_PASSWORD.sub(lambda m: f"{m['keep']}{MASK}", text)


class RedactingConsole(Console):
    """A ``rich`` console that redacts every text it prints (commands print errors verbatim)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        super().print(
            *(redact(item) if isinstance(item, str | BaseException) else item for item in objects),
            **kwargs,
        )
