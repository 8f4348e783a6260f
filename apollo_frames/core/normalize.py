"""Turn messy cell values into canonical Apollo inputs, or a reason why not.

Every ``normalize_*`` function takes one raw cell value (whatever pandas hands
over: ``str``, ``int``, ``float``, ``None``, ``NaN``, ``pd.NA``, numpy scalars,
lists ...) and returns ``(value, reason)``:

* ``(canonical_str, None)``  the value is usable;
* ``(None, None)``            the cell is missing (None, NaN, NA, NaT, blank);
* ``(None, "reason")``        the cell holds something unusable; the reason is a
  short English sentence naming the problem, safe to show to a user (echoed
  input is truncated to ~40 characters).

They never raise for any input value, and do no I/O and no pandas work per
value (they run over millions of rows): plain ``str`` methods and precompiled
regular expressions only.  :func:`normalize_column` maps one of them over a list.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

import idna
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from publicsuffixlist import PublicSuffixList

__all__ = [
    "is_missing",
    "clean_text",
    "normalize_email",
    "is_locked_email",
    "normalize_domain",
    "normalize_host",
    "registrable_domain",
    "normalize_linkedin_url",
    "normalize_hashed_email",
    "normalize_apollo_id",
    "normalize_name",
    "normalize_column",
    "normalize_fast",
    "normalize_fast_arrays",
    "text_array",
]

Result = tuple["str | None", "str | None"]

_ECHO = 40
# Zero-width characters and the byte-order mark: invisible, often pasted along.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
# C0/C1 control characters other than whitespace (which str.split() removes).
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x9f]")


def _echo(s: str) -> str:
    """The value as quoted in a reason, cut to ~40 characters."""
    return repr(s if len(s) <= _ECHO else s[: _ECHO - 1] + "…")


def is_missing(v: Any) -> bool:
    """True for None, NaN (float, numpy, Decimal), pd.NA, NaT and blank strings."""
    if v is None:
        return True
    t = type(v)
    if t is str:
        return not v or v.isspace()
    if t is float:
        return v != v
    if isinstance(v, str):
        return not v or v.isspace()
    if isinstance(v, (float, np.floating)):
        return bool(v != v)
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(v))
    if isinstance(v, Decimal):
        return v.is_nan()
    name = t.__name__
    if name in ("NAType", "NaTType"):  # pd.NA, pd.NaT without importing pandas here
        return True
    return False


def _number_text(v: object) -> Result:
    """Text for an int or float cell: 42 -> '42', 42.0 -> '42', 3.5 -> '3.5'."""
    if isinstance(v, (int, np.integer)):
        return str(int(v)), None
    f = float(v)  # type: ignore[arg-type]
    if not math.isfinite(f):
        return None, f"not a usable value: {f}"
    if f.is_integer():
        return str(int(f)), None
    return repr(f), None


def clean_text(v: Any, *, max_len: int = 512) -> Result:
    """Stripped text with inner whitespace collapsed to single spaces, NFC-normalised.

    Numbers are accepted (``42`` and ``42.0`` -> ``"42"``, ``3.5`` -> ``"3.5"``);
    booleans, bytes, lists, dicts and other objects are refused with a reason
    naming their type, as is text longer than ``max_len`` characters (after
    cleaning) or text holding control characters.
    """
    if v is None:
        return None, None
    t = type(v)
    if t is not str:
        if isinstance(v, str):
            v = str(v)
        elif is_missing(v):
            return None, None
        elif isinstance(v, (bool, np.bool_)):
            return None, f"expected text, got a boolean ({bool(v)})"
        elif isinstance(v, (int, float, np.integer, np.floating, Decimal)):
            return _number_text(v)
        else:
            return None, f"expected text, got a value of type {t.__name__}"
    s = v
    if not s.isascii():
        s = _INVISIBLE.sub("", s)
        s = unicodedata.normalize("NFC", s)
    s = " ".join(s.split())
    if not s:
        return None, None
    if len(s) > max_len:
        return None, f"value too long ({len(s)} characters, limit {max_len})"
    if _CONTROL.search(s):
        return None, f"contains control characters: {_echo(s)}"
    return s, None


# --------------------------------------------------------------------- e-mail
_MAILTO = re.compile(r"^mailto:", re.I)
_NAME_ADDR = re.compile(r"^[^<>]*<([^<>]*)>$")  # 'Bob <bob@x.example>' and '<bob@x.example>'
_LOCAL = re.compile(r"^[^\s@\"(),:;<>\[\]\\]+$")
# One label: letters/digits (any script), inner hyphens, 1-63 characters.
_LABEL = r"(?:[0-9a-z\u00a1-\uffff](?:[0-9a-z\u00a1-\uffff-]{0,61}[0-9a-z\u00a1-\uffff])?)"
# A top-level label: alphabetic (any script), or an IDNA 'xn--' label.
_TLD = r"(?:[a-z\u00a1-\uffff]{2,63}|xn--[0-9a-z-]{2,59})"
_HOST = re.compile(rf"^(?:{_LABEL}\.)+{_TLD}$")


#: What Apollo writes where a person's e-mail is not unlocked (``email_not_unlocked@domain.com``): not an address.
LOCKED_EMAIL = "email_not_unlocked@"


def is_locked_email(value: object) -> bool:
    """Whether ``value`` is Apollo's placeholder for an e-mail not unlocked (any ``email_not_unlocked@...``)."""
    return isinstance(value, str) and value.strip().lower().startswith(LOCKED_EMAIL)


#: between several addresses in one cell: ", " "; " " ::: " (Google contacts), " | "
_SEVERAL = re.compile(r"\s*(?::::|[,;|])\s*")
#: the note of a cell that held several addresses
SEVERAL_EMAILS = "email: the first valid of {n} addresses in the cell was used"


def normalize_email(v: object) -> Result:
    """``'  MailTo:<Bob@Acme.Example> '`` -> ``'bob@acme.example'``, or a reason.

    A cell of several addresses (``'a@x.com, b@y.com'``, ``'a ::: b'``) gives its first valid one, with a note
    (the second of the pair) saying so."""
    s, why = clean_text(v, max_len=320)
    if s is None:
        return None, why
    parts = _SEVERAL.split(s) if s.count("@") > 1 else []
    if len(parts) > 1:
        first = next((e for e in (_one_email(p)[0] for p in parts) if e is not None), None)
        if first is not None:
            return first, SEVERAL_EMAILS.format(n=len(parts))
    return _one_email(s)


def _one_email(s: str) -> Result:
    """One address, cleaned of ``mailto:``, a display name and quotes; or the reason it is not one."""
    e = s.lower()
    if e.startswith("mailto:"):
        e = _MAILTO.sub("", e).split("?", 1)[0].strip()
    m = _NAME_ADDR.match(e)
    if m:
        e = m.group(1).strip()
    e = e.strip("'\"")
    problem = None
    if e.startswith(LOCKED_EMAIL):
        problem = "Apollo's placeholder for an e-mail not unlocked, not an address"
    elif e.count("@") != 1:
        problem = "no @" if "@" not in e else "more than one @"
    else:
        local, _, host = e.partition("@")
        host = host.rstrip(".")
        if not local:
            problem = "nothing before the @"
        elif " " in e:
            problem = "contains spaces"
        elif not _LOCAL.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
            problem = "bad characters before the @"
        elif len(local) > 64 or len(host) > 253:
            problem = "too long for an e-mail address"
        elif not _HOST.match(host):
            problem = "the part after the @ is not a domain"
        else:
            return f"{local}@{host}", None
    return None, f"invalid email {_echo(s)}: {problem}"


# --------------------------------------------------------------------- domain
_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*://|^//")
_NETLOC_END = re.compile(r"[/?#\\]")
_PORT = re.compile(r":\d*$")
_WWW = re.compile(r"^www\d*\.")
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def _host(s: str) -> tuple[str | None, str | None]:
    """(lower-case host name of a domain, URL or e-mail-like text, problem); IDNA-encoded to ASCII."""
    d = s.lower()
    if not d.isascii():
        d = d.translate(_DOTS)
    d = _SCHEME.sub("", d, count=1)
    d = _NETLOC_END.split(d, 1)[0]
    d = d.rpartition("@")[2]  # credentials, or the local part of an e-mail
    d = _PORT.sub("", d).strip(".")
    if _WWW.match(d) and d.count(".") >= 2:
        d = _WWW.sub("", d, count=1)
    if not d:
        return None, "no host name"
    if " " in d:
        return None, "contains spaces"
    if "." not in d:
        return None, "no dot (expected something like acme.com)"
    if len(d) > 253 or not _HOST.match(d):
        return None, "not a host name"
    if not d.isascii() or "xn--" in d:
        return _idna(d)
    return d, None


def _idna(d: str) -> tuple[str | None, str | None]:
    """The ASCII (punycode) form of an international host name: one identity for both spellings."""
    try:
        ascii_form = idna.encode(d, uts46=True).decode("ascii")
        idna.decode(ascii_form)  # an 'xn--' label that does not decode is not a name
    except (idna.IDNAError, UnicodeError, ValueError):
        return None, "not a valid international domain name"
    return ascii_form, None


def normalize_host(v: object) -> Result:
    """A bare lower-case host name (ASCII, IDNA-encoded) from a domain, URL or e-mail-like value.

    ``'https://user@www.Shop.Acme.example:8080/p?q#x'`` -> ``'shop.acme.example'``;
    ``'münchen.de'`` -> ``'xn--mnchen-3ya.de'``. Subdomains are kept: see
    :func:`normalize_domain` for an organisation's domain.
    """
    s, why = clean_text(v, max_len=2048)
    if s is None:
        return None, why
    host, problem = _host(s)
    return (host, None) if host is not None else (None, f"invalid domain {_echo(s)}: {problem}")


@functools.lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    """The public suffix list bundled with ``publicsuffixlist`` (read once from the package; never fetched)."""
    return PublicSuffixList()


@functools.lru_cache(maxsize=2**16)
def registrable_domain(host: str) -> str | None:
    """``'shop.acme.co.uk'`` -> ``'acme.co.uk'``: the host's public suffix plus one label; None for a suffix itself.

    Private suffixes count (``acme.github.io`` stays itself): hosted pages on one
    platform are different organisations. Unknown top-level labels (``.example``)
    are suffixes of one label.
    """
    return _suffixes().privatesuffix(host)


def normalize_domain(v: object) -> Result:
    """An organisation's domain: the registrable domain of a domain, URL or e-mail-like value.

    ``'https://www.shop.Acme.co.uk/path'`` -> ``'acme.co.uk'``, ``'blog.acme.com'``
    -> ``'acme.com'``, ``'bob@mail.acme.example'`` -> ``'acme.example'``;
    international names in their ASCII form (``'münchen.de'`` ->
    ``'xn--mnchen-3ya.de'``). A public suffix alone (``co.uk``) and a LinkedIn
    profile link are not an organisation's domain. E-mail addresses themselves
    are never reduced (:func:`normalize_email`).
    """
    host, why = normalize_host(v)
    if host is None:
        return None, why
    if (host == "linkedin.com" or host.endswith(".linkedin.com")) and _LINKEDIN_PAGE.search(str(v).lower()):
        return None, f"invalid domain {_echo(str(v).strip())}: a LinkedIn page, not the organisation's website"
    registrable = registrable_domain(host)
    if registrable is None:
        return None, f"invalid domain {_echo(host)}: a public suffix (like co.uk), not an organisation's domain"
    return registrable, None


# ------------------------------------------------------------------- LinkedIn
_LINKEDIN = re.compile(
    r"^(?:https?://)?(?:[a-z0-9-]+\.)?linkedin\.com(?::\d+)?/(in|company)/([^/?#\s]+)/?(?:[/?#].*)?$"
)
#: a linkedin.com address with a path: a profile or company page (a scraper's ``companyUrl``), not a website
_LINKEDIN_PAGE = re.compile(r"linkedin\.com(?::\d+)?/+[^/?#\s]")
_LINKEDIN_HOST = re.compile(r"^(?:https?://)?(?:[a-z0-9-]+\.)?linkedin\.com(?:[:/?#]|$)")


def normalize_linkedin_url(v: object) -> Result:
    """``'https://uk.linkedin.com/in/Jane-Doe/?trk=x'`` -> ``'http://www.linkedin.com/in/jane-doe'``.

    Person (``/in/<slug>``) and company (``/company/<slug>``) URLs are rewritten
    to the form Apollo returns: ``http://www.linkedin.com/<kind>/<slug>``, slug
    lower-cased, without query, fragment or trailing path.
    """
    s, why = clean_text(v, max_len=2048)
    if s is None:
        return None, why
    u = s.lower()
    m = _LINKEDIN.match(u)
    if m:
        return f"http://www.linkedin.com/{m.group(1)}/{m.group(2)}", None
    if _LINKEDIN_HOST.match(u):
        return None, f"invalid LinkedIn URL {_echo(s)}: expected a /in/<name> or /company/<name> link"
    return None, f"invalid LinkedIn URL {_echo(s)}: not a linkedin.com address"


# ---------------------------------------------------------------- hashes, ids
_HEX = re.compile(r"^[0-9a-f]+$")


def normalize_hashed_email(v: object) -> Result:
    """Lower-case hex MD5 (32 characters) or SHA-256 (64 characters) of an e-mail."""
    s, why = clean_text(v, max_len=128)
    if s is None:
        return None, why
    h = s.lower()
    if _HEX.match(h) and len(h) in (32, 64):
        return h, None
    detail = "not hexadecimal" if not _HEX.match(h) else f"{len(h)} hex characters"
    return None, (
        f"invalid hashed email {_echo(s)}: expected an MD5 (32 hex characters) or SHA-256 "
        f"(64 hex characters), got {detail}"
    )


def normalize_apollo_id(v: object) -> Result:
    """An Apollo record id: 24 hex characters, lower-cased."""
    s, why = clean_text(v, max_len=128)
    if s is None:
        return None, why
    h = s.lower()
    if len(h) == 24 and _HEX.match(h):
        return h, None
    return None, f"invalid Apollo id {_echo(s)}: expected 24 hex characters"


def normalize_name(v: object) -> Result:
    """A person or company name: trimmed, whitespace collapsed, case and accents kept (NFC)."""
    return clean_text(v, max_len=256)


def normalize_column(
    values: Iterable[object], fn: Callable[[object], Result]
) -> tuple[list[str | None], list[str | None]]:
    """Apply one normaliser to every value: (values, reasons), two lists of the input's length."""
    out: list[str | None] = []
    reasons: list[str | None] = []
    add_value, add_reason = out.append, reasons.append
    for v in values:
        value, why = fn(v)
        add_value(value)
        add_reason(why)
    return out, reasons


# ---------------------------------------------------------------- column fast path
# A whole column at a time (pyarrow.compute), for the values whose answer is sure without the per-value
# normaliser: missing values, and text that the pattern of its kind accepts as it stands (after trimming
# ASCII whitespace; lower-cased where the normaliser lower-cases), within a length where no other rule
# applies. Names may hold any script when already NFC, with no character ``str.split`` treats as
# whitespace other than single spaces, no control or invisible character. Every other value is left
# undecided for the normaliser itself, so both give the same answer.
_FAST_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_FAST_HOST = rf"(?:{_FAST_LABEL}\.)+[a-z]{{2,63}}"
# Not: C0 controls and space, DEL and C1 controls, Unicode white space (str.isspace), zero-width characters.
_FAST_WORD = (
    r"[^\x{0}-\x{20}\x{7f}-\x{a0}\x{1680}\x{2000}-\x{200d}\x{2028}\x{2029}\x{202f}\x{205f}\x{2060}\x{3000}"
    r"\x{feff}]"
)
#: kind -> (pattern on the trimmed text, longest text it may decide, lower-cased first (ASCII only), any script)
_FAST: dict[str, tuple[str, int, bool, bool]] = {
    # up to 64 characters before the @ and 253 after it (checked beside the pattern: ``_email_parts_fit``)
    "email": (rf"^[a-z0-9_%+-]+(?:\.[a-z0-9_%+-]+)*@{_FAST_HOST}$", 64 + 1 + 253, True, False),
    "name": (rf"^{_FAST_WORD}+(?: {_FAST_WORD}+)*$", 256, False, True),
    "id": (r"^[0-9a-f]{24}$", 24, True, False),
}
_TEXT_TYPES = frozenset({str, type(None), float})


def text_array(values: Sequence[object] | pa.Array) -> pa.Array | None:
    """The values as an Arrow string array (NaN and None as null), or None when any is not text.

    An Arrow array of text is taken as it is (large strings as strings); one of another type is not text."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if pa.types.is_string(values.type):
            return values
        return values.cast(pa.string()) if pa.types.is_large_string(values.type) else None
    if any(t.__name__ != "NAType" for t in set(map(type, values)) - _TEXT_TYPES):  # pd.NA: null to Arrow
        return None
    try:
        return pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def _email_parts_fit(text: pa.Array, length: pa.Array) -> pa.Array:
    """At most 64 characters before the (first) @ and 253 after it (ASCII text: bytes are characters)."""
    at = pc.find_substring(text, "@")
    return pc.and_(pc.less_equal(at, 64), pc.less_equal(pc.subtract(pc.subtract(length, at), 1), 253))


def normalize_fast(values: Sequence[object] | pa.Array, kind: str | None) -> tuple[list[str | None], list[bool]]:
    """(normalised value or None, decided) per value, a column at a time; undecided values need the normaliser.

    ``kind`` is ``"email"``, ``"name"``, ``"id"`` (the normaliser of that name) or None
    (only missing values are decided). A decided value is what the normaliser gives, with no reason.
    """
    done, decided = normalize_fast_arrays(values, kind)
    return done.to_pylist(), decided.to_pylist()


def normalize_fast_arrays(values: Sequence[object] | pa.Array, kind: str | None) -> tuple[pa.Array, pa.Array]:
    """:func:`normalize_fast` as two Arrow arrays (string, null where not decided or missing; bool, no nulls).

    ``values`` may be an Arrow array (a pandas text column as it is, without a copy): a missing value is null.
    """
    n = len(values)
    arr = text_array(values)
    if arr is None:
        return pa.nulls(n, pa.string()), pa.array([v is None for v in values], pa.bool_())
    missing = arr.is_null()
    if kind is None or n == 0:
        return pa.nulls(n, pa.string()), missing
    pattern, limit, lower, any_script = _FAST[kind]
    text = pc.ascii_trim_whitespace(arr)
    ascii_ = pc.string_is_ascii(arr)
    if lower:
        text = pc.ascii_lower(text)
    plain = pc.or_(ascii_, pc.equal(text, pc.utf8_normalize(text, form="NFC"))) if any_script else ascii_
    length = pc.utf8_length(text)
    ok = pc.and_(pc.and_(plain, pc.match_substring_regex(text, pattern)), pc.less_equal(length, limit))
    if kind == "email":
        ok = pc.and_(pc.and_(ok, _email_parts_fit(text, length)), pc.invert(pc.starts_with(text, LOCKED_EMAIL)))
    ok = pc.fill_null(ok, False)
    blank = pc.fill_null(pc.and_(ascii_, pc.equal(length, 0)), False)
    decided = pc.or_(pc.or_(ok, blank), missing)
    return pc.if_else(ok, text, pa.scalar(None, pa.string())), decided
