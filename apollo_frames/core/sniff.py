"""What a column's values look like, from a sample: the evidence for recognising a column by its content.

The resolver (:mod:`apollo_frames.core.columns`) asks this module only about
columns whose header it did not recognise. It looks at the first
:data:`SAMPLE` non-empty values of a column (within its first :data:`SCAN`
rows), never at every row, so recognising columns stays cheap on millions of
rows. Each value gets one kind (:func:`kind_of`): ``email``, ``linkedin`` (a
LinkedIn profile), ``web`` (a web address or bare domain), ``id`` (24 hex
digits, Apollo's id shape), ``other_url`` (another LinkedIn page, a social
profile), ``number`` or ``text``.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from apollo_frames.core.normalize import is_missing

__all__ = ["NOUNS", "SAMPLE", "SCAN", "Evidence", "Profile", "first_email", "kind_of", "profile"]

#: non-empty values looked at per column, within its first SCAN rows
SAMPLE, SCAN = 200, 2000
_EMAIL = re.compile(r"^[^@\s,;<>\"']+@[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9\-]+)*\.[a-z]{2,}\.?$")
#: separators between several addresses in one cell: ", " "; " " ::: " (Google contacts) or spaces
_SEPARATORS = re.compile(r"\s*(?::::|[,;|]|\s)\s*")
_WEB = re.compile(
    r"^(?:[a-z][a-z0-9+.\-]*://)?(?:www\d*\.)?(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+[a-z]{2,}(?::\d+)?(?:[/?#]\S*)?$"
)
_HEX24 = re.compile(r"^[0-9a-f]{24}$")
_PROFILE = re.compile(r"linkedin\.com/(?:in|pub)/", re.I)
#: hosts whose pages name a profile or a post, not a company's own site
_OTHER_HOSTS = re.compile(
    r"(?:^|[/.@])(?:linkedin|facebook|twitter|x|instagram|youtube|github|tiktok)\.com(?:[/:?#]|$)"
)
_LETTER = re.compile(r"[^\W\d_]")
#: what values of each kind are called in reasons
NOUNS = {
    "email": "e-mail addresses",
    "linkedin": "LinkedIn profile URLs",
    "web": "web addresses or domains",
    "id": "Apollo ids",
    "text": "names",
}


def first_email(text: str) -> str | None:
    """The first part of ``text`` shaped like an e-mail address (a cell may hold several), or None."""
    for part in _SEPARATORS.split(text.strip().lower()):
        part = part.removeprefix("mailto:").strip("<>\"'")
        if _EMAIL.match(part):
            return part
    return None


def kind_of(value: Any) -> str:
    """The kind of one non-missing value (see the module docstring)."""
    text = str(value).strip().lower()
    if "@" in text and first_email(text):
        return "email"
    if _PROFILE.search(text):
        return "linkedin"
    if _OTHER_HOSTS.search(text):
        return "other_url"
    if _HEX24.match(text):
        return "id"
    if _WEB.match(text):
        return "web"
    return "text" if _LETTER.search(text) else "number"


@dataclasses.dataclass(frozen=True)
class Evidence:
    """How well a column's sampled values fit a kind."""

    #: non-empty values sampled
    n: int
    #: share of them of the kind
    fit: float
    #: share of the rows scanned (until the sample was full) that are not empty
    filled: float
    #: how many times its most common value is sampled (an owner's address, a form's page)
    top: int

    def says(self, noun: str) -> str:
        return f"{self.fit:.0%} of {self.n} sampled values look like {noun}"

    def shared(self, most: float) -> bool:
        """True when one value fills more than ``most`` of the sample (3 times at least): not each row's own."""
        return self.top >= 3 and self.top > most * self.n


@dataclasses.dataclass(frozen=True)
class Profile:
    """A column's sample, read once: how many values of each kind, how full the column is, its commonest value."""

    n: int
    kinds: Counter[str]
    filled: float
    top: int

    def evidence(self, kind: str) -> Evidence:
        """How the sample fits ``kind`` (one of :func:`kind_of`'s kinds)."""
        return Evidence(self.n, self.kinds[kind] / self.n if self.n else 0.0, self.filled, self.top)


def profile(values: Sequence[Any]) -> Profile:
    """The :class:`Profile` of the first :data:`SAMPLE` non-empty values within the first :data:`SCAN` of a column."""
    picked: list[Any] = []
    scanned = 0
    for value in getattr(values, "iloc", values)[:SCAN]:  # stops at SAMPLE values: a full column costs no more
        scanned += 1
        if not is_missing(value):
            picked.append(value)
            if len(picked) == SAMPLE:
                break
    if not picked:  # an empty column
        return Profile(0, Counter(), 0.0, 0)
    filled = len(picked) / scanned
    top = Counter(str(v).strip().lower() for v in picked).most_common(1)[0][1]
    return Profile(len(picked), Counter(kind_of(v) for v in picked), filled, top)
