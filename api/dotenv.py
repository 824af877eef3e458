"""A strict `.env` reader: ASCII only, KEY=VALUE lines, errors that name the line and never the value.

Fail closed: lines end only at "\n" or "\r\n" (str.splitlines would also break at \x1c, \x0b, \x85,
a lone \r ... and so let a `KEY=value` hidden inside a comment take effect); any other control
character, an empty value and a key given twice are errors.
"""

from __future__ import annotations

import re
from pathlib import Path

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EnvFileError(ValueError):
    """The .env file is not valid; the message names the file and line, never a value."""


def parse_env_text(text: str, source: str = ".env") -> dict[str, str]:
    """Parse `.env` content.

    Accepted: blank lines, `# comments`, `KEY=VALUE`, an optional `export ` prefix, values in single or
    double quotes (taken literally), and a trailing ` # comment` after an unquoted value.

    Raises:
        EnvFileError: a non-ASCII or control character (a tab is allowed), a line that is not KEY=VALUE,
            a bad key, a duplicate key or an empty value.
    """
    out: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")  # CRLF files; a lone \r left inside the line is refused below
        for col, ch in enumerate(line, start=1):
            if ord(ch) > 127:
                raise EnvFileError(f"{source} line {number}: non-ASCII character at column {col}")
            if (ord(ch) < 32 and ch != "\t") or ord(ch) == 127:
                raise EnvFileError(f"{source} line {number}: control character at column {col}")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped.removeprefix("export ").lstrip()
        key, sep, raw = stripped.partition("=")
        key = key.strip()
        if not sep:
            raise EnvFileError(f"{source} line {number}: expected KEY=VALUE")
        if not _KEY.match(key):
            raise EnvFileError(f"{source} line {number}: {key[:40]!r} is not a valid variable name")
        if key in out:
            raise EnvFileError(f"{source} line {number}: {key} is set twice")
        value = _value(raw.strip(), source, number)
        if not value:
            # `KEY=` is ambiguous (unset? empty? a value lost in an edit?): refuse it
            raise EnvFileError(f"{source} line {number}: {key} has an empty value")
        out[key] = value
    return out


def _value(raw: str, source: str, number: int) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        rest = raw[end + 1 :].strip() if end > 0 else ""
        if end < 0 or (rest and not rest.startswith("#")):
            raise EnvFileError(f"{source} line {number}: unterminated or malformed quoted value")
        return raw[1:end]
    if raw.startswith("#"):
        # `KEY= # note` or `KEY=#x`: a comment or a value? Refuse; a value with a leading # is quoted
        raise EnvFileError(f"{source} line {number}: an unquoted value must not start with #")
    # An unquoted value ends where a whitespace-led comment starts (the seed's own example has one)
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def read_env_file(path: Path) -> dict[str, str]:
    """Raises EnvFileError (also when the file cannot be read or decoded)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EnvFileError(f"{path}: cannot read ({exc.strerror})") from None
    for offset, byte in enumerate(data):
        if byte > 127:
            number = data.count(b"\n", 0, offset) + 1
            col = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
            raise EnvFileError(f"{path} line {number}: non-ASCII byte at column {col}")
    return parse_env_text(data.decode("ascii"), str(path))
