"""The match-quality flags of :mod:`apollo_frames.ops.quality`, a column at a time.

A people run compares every matched row with its answer; one Python call per
row and rule cost more than the rest of a cached re-run together. Here each
rule runs over whole Arrow columns (``pyarrow.compute``): text is folded,
domains cut and company names reduced to their words by string kernels where
the value is plain ASCII, and by the per-value rule of ``quality`` (once per
distinct value) where it is not. Only what a kernel cannot say (is one domain
a subdomain of another, is one set of company words a subset of the other) is
decided per row, for the rows where it matters. The flags are those
:func:`~apollo_frames.ops.quality.match_flags` gives (tests compare both).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from apollo_frames.core.columnwise import side_by_side
from apollo_frames.core.normalize import text_array
from apollo_frames.core.reasons import reason as coded_reason
from apollo_frames.engine.runner import Prepared
from apollo_frames.ops.quality import (
    CONFLICT_FLAGS,
    FLAG_COLUMN,
    FLAGS,
    LEGAL_SUFFIXES,
    PERSONAL_MAIL_DOMAINS,
    check_on_conflict,
    company_words,
    compared_domain,
    fold_text,
    former_employer,
    job_change_reason,
    title_column,
)

#: the record fields the rules read
_FIELDS = ("email", "first_name", "last_name", "name", "organization_name", "domain")
#: answer columns the rules read
_ANSWER = ("person.first_name", "person.last_name", "person.title", "person.organization.name",
           "person.organization.primary_domain", "person.organization.website_url", "person.employment_history")
#: flag bit -> name, in the order ``apollo_match_flags`` lists them
_BITS = {1 << i: name for i, name in enumerate(FLAGS)}
#: flags code -> its text (a column of flags is one take of it)
_TEXTS = pa.array([",".join(name for bit, name in _BITS.items() if code & bit) for code in range(1 << len(FLAGS))],
                  pa.string())
_CONFLICT_BITS = sum(bit for bit, name in _BITS.items() if name in CONFLICT_FLAGS)
_COMPANY_BIT, _JOB_BIT = 1 << FLAGS.index("company_mismatch"), 1 << FLAGS.index("job_change")

_PERSONAL = "(?:^|\\.)(?:" + "|".join(re.escape(d) for d in sorted(PERSONAL_MAIL_DOMAINS)) + ")$"
_SUFFIX = "(?:" + "|".join(sorted(LEGAL_SUFFIXES)) + ")"
#: a run of legal-suffix words between spaces (the folded name is padded with one space each side)
_SUFFIX_RUN = f" {_SUFFIX}(?: {_SUFFIX})* "
_EMPTY = pa.scalar("", pa.string())


def _by_rule(done: pa.Array, raw: pa.Array, rows: pa.Array, rule: Callable[[Any], str]) -> pa.Array:
    """``done``, with the rows of the boolean mask ``rows`` replaced by ``rule`` of their ``raw`` value."""
    rows = pc.fill_null(rows, False)
    if not pc.any(rows).as_py():
        return done
    return pc.replace_with_mask(done, rows, pa.array([rule(v) for v in raw.filter(rows).to_pylist()], pa.string()))


def _text(values: Sequence[Any] | pa.Array) -> pa.Array | None:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(pa.string()) if pa.types.is_large_string(values.type) else values
    return text_array(values)


def _per_distinct(kernel: Callable[[pa.Array], pa.Array], rule: Callable[[Any], str]) -> Callable[..., pa.Array]:
    """A column function: ``kernel`` over the distinct values (text; ``rule`` itself for values of other types),
    then back to one value per row, "" for a missing one."""

    def column(values: Sequence[Any] | pa.Array) -> pa.Array:
        arr = _text(values)
        if arr is None:
            return pa.array([rule(v) for v in values], pa.string())
        encoded = pc.dictionary_encode(arr)
        return pc.fill_null(kernel(encoded.dictionary).take(encoded.indices), _EMPTY)

    column.__doc__ = f"``{rule.__name__}`` of every value, a column at a time (\"\" for a blank one)."
    return column


def _fold(distinct: pa.Array) -> pa.Array:
    # ASCII: casefold is lower, NFKD changes nothing, \w is [a-z0-9_]; runs of anything else become one space
    folded = pc.utf8_trim(pc.replace_substring_regex(pc.ascii_lower(distinct), "[^a-z0-9_]+", " "), " ")
    return _by_rule(folded, distinct, pc.invert(pc.string_is_ascii(distinct)), fold_text)


def _after_last(text: pa.Array, sep: str) -> tuple[pa.Array, pa.Array]:
    """Per value: what follows its last ``sep`` (the whole value when there is none), and whether there is one."""
    split = pc.split_pattern(text, sep)
    counts = pc.list_value_length(split)
    last = split.offsets.to_numpy()[1:] - 1  # (each list's last part, taken out of all parts at once)
    after = split.values.take(pa.array(last, mask=_np(pc.is_null(counts))))
    return after, pc.greater(counts, 1)


def _domain(distinct: pa.Array) -> pa.Array:
    # printable ASCII without spaces: strip() does nothing and casefold is lower
    text = pc.ascii_lower(distinct)
    text = pc.replace_substring_regex(text, "^[a-z][a-z0-9+.-]*://", "", max_replacements=1)
    text = pc.list_element(pc.split_pattern(text, "/", max_splits=1), 0)
    text = pc.utf8_trim(_after_last(text, "@")[0], ".")
    text = pc.if_else(pc.starts_with(text, "www."), pc.utf8_slice_codeunits(text, 4), text)
    return _by_rule(text, distinct, pc.invert(pc.match_substring_regex(distinct, "^[!-~]*$")), compared_domain)


def _words(value: Any) -> str:
    return " ".join(company_words(value))


def _company(distinct: pa.Array) -> pa.Array:
    padded = pc.binary_join_element_wise(" ", _fold(distinct), " ", "")
    words = pc.utf8_trim(pc.replace_substring_regex(padded, _SUFFIX_RUN, " "), " ")
    # a dot between single letters ("S.A.") is dropped before folding; other scripts fold by the rule
    return _by_rule(words, distinct, pc.or_(pc.invert(pc.string_is_ascii(distinct)), pc.match_substring(distinct, ".")),
                    _words)


fold_column = _per_distinct(_fold, fold_text)
domain_column = _per_distinct(_domain, compared_domain)
company_column = _per_distinct(_company, _words)


def _np(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _same_domain(a: pa.Array, b: pa.Array) -> np.ndarray:
    """quality's ``_same_domain`` per row: equal, or one a subdomain of the other (that, per row, where unequal)."""
    both = _np(pc.and_(pc.not_equal(a, _EMPTY), pc.not_equal(b, _EMPTY)))
    same = both & _np(pc.equal(a, b))
    rows = np.flatnonzero(both & ~same)
    if len(rows):
        take = pa.array(rows)
        pairs = zip(a.take(take).to_pylist(), b.take(take).to_pylist(), strict=True)
        same[rows] = [x.endswith("." + y) or y.endswith("." + x) for x, y in pairs]
    return same


class _Rows:
    """The matched rows' inputs and answers, as columns."""

    def __init__(self, n: int, inputs: dict[str, Any], titles: list[Any] | None, answers: dict[str, pa.Array]):
        self.n = n
        self.inputs, self.titles, self.answers = inputs, titles, answers

    def given(self, field: str) -> list[Any] | pa.Array:
        found = self.inputs.get(field)
        return found if found is not None else pa.nulls(self.n, pa.string())

    def answer(self, column: str) -> pa.Array:
        found = self.answers.get(column)
        return found if found is not None else pa.nulls(self.n, pa.string())


def _email_flags(rows: _Rows, primary: pa.Array, website: pa.Array) -> np.ndarray:
    email = _text(rows.given("email"))
    if email is None:  # not text: each e-mail through the rule
        parts = [str(e).rsplit("@", 1)[1] if e and "@" in str(e) else None for e in rows.given("email")]
        part = pa.array(parts, pa.string())
    else:  # what follows the last @ (null: no @)
        after, at = _after_last(email, "@")
        part = pc.if_else(at, after, pa.scalar(None, pa.string()))
    encoded = pc.dictionary_encode(part)  # (the domain and whether it is personal: once per distinct part)
    domains = _domain(encoded.dictionary)
    domain = pc.fill_null(domains.take(encoded.indices), _EMPTY)
    personal = _np(pc.match_substring_regex(domains, _PERSONAL).take(encoded.indices))
    return _np(part.is_valid()) & ~personal & _elsewhere(domain, primary, website)


def _elsewhere(domain: pa.Array, primary: pa.Array, website: pa.Array) -> np.ndarray:
    """Per row, whether the answer's organization has a domain (primary or website) and ``domain`` (the row's) is
    neither: the rule the e-mail and the company domain flags share."""
    has_org = _np(pc.or_(pc.not_equal(primary, _EMPTY), pc.not_equal(website, _EMPTY)))
    return has_org & ~(_same_domain(domain, primary) | _same_domain(domain, website))


def _subset_either(given: pa.Array, org: pa.Array) -> np.ndarray:
    """Per row: neither word set is empty and neither holds the other (per row only where they differ)."""
    both = _np(pc.and_(pc.not_equal(given, _EMPTY), pc.not_equal(org, _EMPTY)))
    out = both & ~_np(pc.equal(given, org))
    rows = np.flatnonzero(out)
    if len(rows):
        take = pa.array(rows)
        pairs = zip(given.take(take).to_pylist(), org.take(take).to_pylist(), strict=True)
        out[rows] = [not (set(g.split()) <= set(o.split()) or set(o.split()) <= set(g.split())) for g, o in pairs]
    return out


def _company_flags(rows: _Rows, primary: pa.Array, website: pa.Array) -> np.ndarray:
    """The answer's side is only worked out when the rows give a company name or domain (a frame of e-mails and
    names gives neither: nothing to compare)."""
    given = company_column(rows.given("organization_name"))
    by_name = np.zeros(rows.n, bool)
    if pc.any(pc.not_equal(given, _EMPTY)).as_py():  # (company_column gives "" for a missing value)
        by_name = _subset_either(given, company_column(rows.answer("person.organization.name")))
    domain = domain_column(rows.given("domain"))
    by_domain = _np(pc.not_equal(domain, _EMPTY))
    if by_domain.any():
        by_domain &= _elsewhere(domain, primary, website)
    return by_name | by_domain


def _differ(a: pa.Array, b: pa.Array) -> np.ndarray:
    """Both given and unequal."""
    return _np(pc.and_(pc.and_(pc.not_equal(a, _EMPTY), pc.not_equal(b, _EMPTY)), pc.not_equal(a, b)))


def _part(parts: pa.StructArray, name: str) -> pa.Array:
    """One group of an ``extract_regex`` result, "" where the pattern did not match."""
    return pc.fill_null(pc.if_else(parts.is_valid(), pc.struct_field(parts, name), _EMPTY), _EMPTY)


def _name_flags(rows: _Rows) -> np.ndarray:
    first, last = fold_column(rows.given("first_name")), fold_column(rows.given("last_name"))
    name = _text(rows.given("name"))
    if name is not None:  # a name given (not blank text)
        named = pc.fill_null(pc.not_equal(name, _EMPTY), False)
    else:
        named = pa.array([bool(v) for v in rows.given("name")], pa.bool_())
    use = pc.fill_null(pc.and_(pc.and_(pc.equal(first, _EMPTY), pc.equal(last, _EMPTY)), named), False)
    if pc.any(use).as_py():  # only a full name: its first and last word
        parts = pc.extract_regex(fold_column(rows.given("name")), "^(?P<f>[^ ]+) (?:.* )?(?P<l>[^ ]+)$")
        first = pc.if_else(use, _part(parts, "f"), first)
        last = pc.if_else(use, _part(parts, "l"), last)
    got_first = fold_column(rows.answer("person.first_name"))
    got_last = fold_column(rows.answer("person.last_name"))
    return _differ(first, got_first) | _differ(last, got_last)


def flag_codes(rows: _Rows) -> tuple[np.ndarray, dict[int, str]]:
    """Per row, its flags as bits of :data:`_BITS` (the order of ``FLAGS``); and the job-change rows' reasons."""
    if rows.n == 0:
        return np.zeros(0, dtype=np.int64), {}
    primary, website = side_by_side(domain_column, [rows.answer("person.organization.primary_domain"),
                                                    rows.answer("person.organization.website_url")])
    families: list[Callable[[], np.ndarray]] = [  # (each family's kernels side by side with the others')
        lambda: _email_flags(rows, primary, website), lambda: _company_flags(rows, primary, website),
        lambda: _name_flags(rows)]
    if rows.titles is not None:
        families.append(lambda: _differ(fold_column(rows.titles), fold_column(rows.answer("person.title"))))
    codes = np.zeros(rows.n, np.int64)
    for bit, flags in enumerate(side_by_side(lambda family: family(), families)):
        codes |= flags.astype(np.int64) << bit
    return codes, _job_changes(rows, codes)


def _pick(values: Sequence[Any] | pa.Array, rows: np.ndarray) -> list[Any]:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.take(pa.array(rows, pa.int64())).to_pylist()
    return [values[i] for i in rows]


def _job_changes(rows: _Rows, codes: np.ndarray) -> dict[int, str]:
    """``company_mismatch`` -> ``job_change`` (in ``codes``) where the answer's employment history lists the input
    company as a past employer; returns those rows' reasons. Read per row, for the flagged rows only."""
    picked = np.flatnonzero(codes & _COMPANY_BIT)
    if not len(picked):
        return {}
    names, domains = _pick(rows.given("organization_name"), picked), _pick(rows.given("domain"), picked)
    histories = _pick(rows.answer("person.employment_history"), picked)
    now = _pick(rows.answer("person.organization.name"), picked)
    reasons = {}
    for i, name, domain, history, current in zip(picked.tolist(), names, domains, histories, now, strict=True):
        former = former_employer({"organization_name": name, "domain": domain}, history)
        if former is not None:
            codes[i] = (codes[i] & ~_COMPANY_BIT) | _JOB_BIT
            reasons[i] = job_change_reason(former, current)
    return reasons


def _inputs(prepared: Prepared, picked: np.ndarray, every: bool) -> dict[str, Any]:
    """The record fields the rules read, over the ``picked`` rows (all rows when ``every``); fields no column
    supplies are left out. Read by column when prepare kept the columns."""
    mapped = prepared.columns
    fields = [f for f in _FIELDS if mapped is None or f in mapped]
    kept = prepared.fields
    if kept is not None and all(f in kept for f in fields):
        if every:
            return {f: kept[f] for f in fields}
        take = pa.array(picked, pa.int64())
        return {f: kept[f].take(take) for f in fields}
    records = [prepared.records[i] or {} for i in picked]
    return {field: [r.get(field) for r in records] for field in fields}


def flag_texts(n: int, picked: np.ndarray, codes: np.ndarray) -> pa.Array:
    """The ``apollo_match_flags`` column: row ``picked[i]`` the text of ``codes[i]``, null elsewhere (one take)."""
    index = np.zeros(n, np.int64)
    index[picked] = codes
    unpicked = np.ones(n, bool)
    unpicked[picked] = False
    return _TEXTS.take(pa.array(index, mask=unpicked))


def reviewer(frame: pd.DataFrame, on_conflict: str = "flag") -> Callable[..., dict[str, pa.Array]]:
    """The runner's review hook for a people run of ``frame``: adds ``apollo_match_flags``, rejects on request."""
    check_on_conflict(on_conflict)
    name = title_column(frame)
    titles = frame[name].tolist() if name is not None else None

    def review(prepared: Prepared, flat: pa.Table, status: list[str], error: list[str | None]) -> dict[str, pa.Array]:
        picked = np.flatnonzero(np.asarray(status, dtype=object) == "matched")
        every = len(picked) == len(status)
        take = pa.array(picked, pa.int64())
        answers = {c: flat.column(c) if every else flat.column(c).take(take) for c in _ANSWER if c in flat.column_names}
        titled = None if titles is None else titles if every else [titles[i] for i in picked]
        rows = _Rows(len(picked), _inputs(prepared, picked, every), titled, answers)
        codes, moved = flag_codes(rows)
        for i, reason in moved.items():
            error[picked[i]] = reason
        if on_conflict == "reject":
            for i, code in zip(picked[(codes & _CONFLICT_BITS) != 0].tolist(),
                               codes[(codes & _CONFLICT_BITS) != 0].tolist(), strict=True):
                conflicts = [name for bit, name in _BITS.items() if code & bit and name in CONFLICT_FLAGS]
                status[i] = "conflict"
                error[i] = coded_reason("conflict", flags=", ".join(conflicts))
        return {FLAG_COLUMN: flag_texts(len(status), picked, codes)}

    return review
