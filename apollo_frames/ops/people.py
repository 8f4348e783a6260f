"""People enrichment through POST people/bulk_match (10 records a call)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Container, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from apollo_frames.client.http import ApolloClient, client_scope, unusable_answer
from apollo_frames.client.ledger import Ledger
from apollo_frames.core import normalize as nz
from apollo_frames.core.columns import PEOPLE, ColumnMapping, Columns, coalesce, resolve
from apollo_frames.core.columnwise import side_by_side
from apollo_frames.core.errors import InputError
from apollo_frames.core.reasons import reason, tagged
from apollo_frames.core.schema import PERSON_SCHEMA, flatten_people
from apollo_frames.engine.assemble import STATUS_COLUMNS, text_schema
from apollo_frames.engine.options import RunOptions
from apollo_frames.engine.records import ColumnRecords
from apollo_frames.engine.runner import Operation, Parsed, Prepared, Unattributed, run_operation
from apollo_frames.ops.phones import (
    ASYNC_COLUMNS,
    PHONE_CREDITS,
    WATERFALL_FLAGS,
    is_async,
    phone_worst,
    polling,
    shown_phones,
)
from apollo_frames.ops.quality import FLAG_COLUMN, check_on_conflict
from apollo_frames.ops.quality_columns import reviewer
from apollo_frames.ops.registry import Command, Spec, register

ENDPOINT = "people/bulk_match"
BATCH_SIZE = 10
__all__ = ["PHONE_CREDITS", "enrich_people", "people_job", "people_options", "prepare_people"]

_NORMALIZERS = {
    "id": nz.normalize_apollo_id,
    "email": nz.normalize_email,
    "hashed_email": nz.normalize_hashed_email,
    "linkedin_url": nz.normalize_linkedin_url,
    "first_name": nz.normalize_name,
    "last_name": nz.normalize_name,
    "name": nz.normalize_name,
    "organization_name": nz.normalize_name,
    "domain": nz.normalize_domain,
}
#: Identifiers strong enough alone, strongest first. Rows sharing the strongest
#: one are the same person and are sent (and paid for) once.
STRONG_IDS = ("id", "email", "hashed_email", "linkedin_url")


#: field -> the column fast path of its normaliser (None: only missing values are decided a column at a time)
_FAST_KINDS = {
    "id": "id",
    "email": "email",
    "first_name": "name",
    "last_name": "name",
    "name": "name",
    "organization_name": "name",
}


def person_record(values: dict[str, Any]) -> tuple[dict | None, dict | None, str | None]:
    """(record to send, identity for dedupe and cache, reason if invalid or a note on a valid row) for one row."""
    record: dict[str, str] = {}
    problems: list[str] = []
    notes: list[str] = []
    for field, raw in values.items():
        value, why = _NORMALIZERS[field](raw)
        if value is not None:
            record[field] = value
            if why:  # a value taken with a note (the first of several e-mails in a cell)
                notes.append(why)
        elif why:
            problems.append(f"{field}: {why}")
    record_, identity, reason = identify(record, problems)
    note = tagged("value_note", "; ".join(notes)) if notes else None
    return record_, identity, note if identity is not None else reason


def identify(record: dict[str, str], problems: list[str]) -> tuple[dict | None, dict | None, str | None]:
    """(record, identity, None) for a normalised record that names a person; else (None, None, reason)."""
    for field in STRONG_IDS:
        if field in record:
            return record, {field: record[field]}, None
    has_name = ("first_name" in record and "last_name" in record) or "name" in record
    has_org = "domain" in record or "organization_name" in record
    if has_name and has_org:
        identity = {
            k: record[k].casefold()
            for k in ("first_name", "last_name", "name", "domain", "organization_name")
            if k in record
        }
        return record, identity, None
    more = "".join(f"; {problem}" for problem in problems)
    return None, None, reason("name_without_company" if has_name else "no_identifier", problems=more)


def _plain_columns(fields: list[str], fast: list[tuple[pa.Array, pa.Array]]) -> Prepared | None:
    """The rows, prepared, when every value was decided, none is missing and the strongest identifier supplied
    is an e-mail or Apollo id: what :func:`identify` gives each row, built by columns. None otherwise."""
    strong = next((f for f in STRONG_IDS if f in fields), None)
    if strong not in ("id", "email") or not all(pc.all(ok).as_py() is not False for _, ok in fast):
        return None
    if any(values.null_count for values, _ in fast):
        return None
    columns = {field: values for field, (values, _) in zip(fields, fast, strict=True)}
    ids = columns[strong]  # (decided e-mails and ids need no JSON escaping: the texts are joined by one kernel)
    return Prepared(ColumnRecords(columns), ColumnRecords({strong: ids}), [None] * len(ids),
                    identity_texts=pc.binary_join_element_wise(f'{{"{strong}":"', ids.cast(pa.string()), '"}', ""),
                    fields=columns)


def _field_values(frame: pd.DataFrame, mapping: ColumnMapping) -> dict[str, pa.Array | list]:
    """Per field, its values: a field one text column supplies as that column in Arrow (no copy), else a list
    (per row, the first non-empty value of the field's columns)."""
    out: dict[str, pa.Array | list] = {}
    for field, labels in mapping.fields.items():
        arrow = _text_column(frame[labels[0]]) if len(labels) == 1 else None
        out[field] = arrow if arrow is not None else coalesce([frame[label].tolist() for label in labels])
    return out


def _text_column(series: Any) -> pa.Array | None:
    """A pandas column of text (missing values allowed) as an Arrow string array; None for any other column."""
    if not isinstance(series, pd.Series):  # (two columns of one name)
        return None
    try:
        arr = pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return None
    return nz.text_array(arr)


def prepare_people(frame: pd.DataFrame, columns: Columns = None) -> Prepared:
    """Map the frame's columns and normalise every row into a bulk_match detail.

    A field several columns supply takes, per row, the first non-empty of them
    (see ``apollo_frames.core.columns``); the mapping is kept as ``prepared.columns``.
    Each column is first normalised a column at a time (``normalize_fast_arrays``); a row
    with any value that path cannot decide goes through :func:`person_record`.
    """
    mapping = resolve(frame.columns, PEOPLE, columns, sample=frame)
    values = _field_values(frame, mapping)
    fields = list(values)
    fast = side_by_side(lambda field: nz.normalize_fast_arrays(values[field], _FAST_KINDS.get(field)), fields)
    plain = _plain_columns(fields, fast)
    if plain is not None:
        plain.columns = mapping
        return plain
    return _by_row(len(frame), mapping, values, fast)


def _by_row(n: int, mapping: ColumnMapping, values: dict[str, pa.Array | list],
            fast: list[tuple[pa.Array, pa.Array]]) -> Prepared:
    """The rows prepared one at a time: from the column path's values where it decided them all, else by
    :func:`person_record` from the raw values."""
    fields = list(values)
    series = {field: v.to_pylist() if isinstance(v, pa.Array) else v for field, v in values.items()}
    decided = [all(row) for row in zip(*(ok.to_pylist() for _, ok in fast), strict=True)] if fields else [False] * n
    records: list[dict | None] = []
    identities: list[dict | None] = []
    reasons: list[str | None] = []
    texts: list[str | None] = []
    rows = zip(*(v.to_pylist() for v, _ in fast), strict=True) if fields else [()] * n
    for i, (sure, row) in enumerate(zip(decided, rows, strict=True)):
        text = None
        if sure:
            known = {f: v for f, v in zip(fields, row, strict=True) if v is not None}
            record, identity, reason = identify(known, [])
            if identity is not None and len(identity) == 1 and ("email" in identity or "id" in identity):
                ((field, value),) = identity.items()
                text = f'{{"{field}":"{value}"}}'  # the fast path's e-mails and ids need no JSON escaping
        else:
            record, identity, reason = person_record({field: series[field][i] for field in fields})
        records.append(record)
        identities.append(identity)
        reasons.append(reason)
        texts.append(text)
    return Prepared(records, identities, reasons, columns=mapping, identity_texts=texts)


def _payload(records: list[dict], options: dict) -> dict:
    body: dict[str, Any] = {"details": records}
    body.update({k: v for k, v in options.items() if v})
    return body


def _person(match: Any) -> dict | None:
    """A match as a person, or None for a miss: ``null``, or a stub (no id, or ``match_confidence`` "none")."""
    if not isinstance(match, dict):
        return None
    if not match.get("id") or str(match.get("match_confidence") or "").lower() == "none":
        return None
    return match


def _credits(data: dict, people: list[dict | None]) -> Any:
    """What the batch cost, as Apollo reports it (the runner checks the figure); not reported: 1 per person."""
    credits = data.get("credits_consumed")
    if credits is None:
        credits = sum(1 for p in people if p is not None)
    return credits


def _parse(records: list[dict], data: Any) -> Parsed:
    """One bulk_match answer: ``matches`` holds one entry per detail, in order (a miss is null or a stub).

    Apollo has also been seen leaving misses out (a shorter ``matches``): then each person is
    matched to its detail by identity (see :func:`align`). An answer not in the documented shape
    (``matches`` not a list, a string where a person should be) is an error for the whole batch:
    nothing of it is cached, so no row is ever stored as a no-match on a malformed answer.
    """
    matches = data.get("matches") if isinstance(data, dict) else None
    if not isinstance(matches, list):
        raise unusable_answer(ENDPOINT, f"'matches' is {type(matches).__name__}, not a list of people")
    for i, match in enumerate(matches):
        if match is not None and not isinstance(match, dict):
            raise unusable_answer(ENDPOINT, f"match {i} is {type(match).__name__}, not a person or null")
    people = [_person(m) for m in matches]
    credits = _credits(data, people)
    if len(matches) == len(records):
        return checked(records, people, credits)
    return align(records, [p for p in people if p is not None], credits)


# -- answers checked against what was asked -----------------------------------------------------------


def checked(records: list[dict], people: list[dict | None], credits: Any) -> Parsed:
    """Positional answers, each checked against its detail: one that contradicts what was asked (see
    :func:`_doubt`) is not this row's person; the row ends ``error`` with the reason and nothing is stored."""
    ids = Counter(str(p.get("id")) for p in people if p is not None)
    errors: dict[int, str] = {}
    for i, (record, person) in enumerate(zip(records, people, strict=True)):
        why = _doubt(record, person, ids[str(person.get("id"))] > 1) if person is not None else None
        if why is not None:
            errors[i] = reason("wrong_person", why=why)
    results = [None if i in errors else p for i, p in enumerate(people)]
    return Parsed(results, credits, errors, contradicted=len(errors))




def _doubt(record: dict, person: dict, repeated: bool) -> str | None:
    """Why ``person`` cannot be ``record``'s answer, or None.

    Found by one of the row's own identifiers (e-mail, hashed e-mail, LinkedIn URL, Apollo id, name + company):
    it is. Otherwise Apollo may still be right (it returns a work e-mail for a personal one, or no e-mail), unless
    a LinkedIn URL or id asked differs from the one answered, the person also answers other rows of the batch,
    or the name asked (without one, the e-mail address asked) does not fit the person's name.
    """
    if _found_by(record, person):
        return None
    who = f"{person.get('name') or _full_name(person) or person.get('id')} ({person.get('email') or 'no e-mail'})"
    for field in ("linkedin_url", "id"):
        asked, got = record.get(field), _NORMALIZERS[field](person.get(field))[0]
        if asked and got and asked != got:
            return f"{field} {asked} was asked, {who} with {got} answered"
    if repeated:
        return f"one person, {who}, answered several different rows of the batch, and none of this row's identifiers"
    if _named(record, person) is False:
        asked = record.get("name") or " ".join(filter(None, (record.get("first_name"), record.get("last_name"))))
        return f"{asked or record.get('email')} was asked, {who} answered"
    return None


def _named(record: dict, person: dict) -> bool | None:
    """Whether the person's name fits the row: the name asked (every part of one in the other), else the e-mail
    address asked (each word before the @ holds a part of the name or is its initial); None: nothing to compare."""
    theirs = set((_fold(person.get("name")) or _full_name(person) or "").replace("-", " ").split())
    asked = _fold(record.get("name")) or _full_name(record)
    if asked:
        mine = set(asked.replace("-", " ").split())
        return bool(theirs) and (mine <= theirs or theirs <= mine)
    email = record.get("email")
    if not email:
        return None
    words = re.findall(r"[a-z]+", _fold(email.partition("@")[0]) or "")
    return bool(words) and all(_fits(word, theirs) for word in words)


def _fits(word: str, parts: set[str]) -> bool:
    """A word of an address fits a name: it holds one of its parts (``mwright``), or is a part's initial."""
    if len(word) == 1:
        return any(part.startswith(word) for part in parts)
    return any(len(part) > 1 and part in word for part in parts)


# -- matching answers to details when Apollo leaves misses out -------------------------------------


def _fold(text: Any) -> str | None:
    """A name as compared: accents, case and spacing ignored."""
    if not isinstance(text, str):
        return None
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(plain.casefold().split()) or None


def _full_name(record: dict) -> str | None:
    """First and last name together, as compared."""
    return _fold(" ".join(filter(None, (record.get("first_name"), record.get("last_name")))))


def _hashes(email: str) -> list[str]:
    return [hashlib.md5(email.encode()).hexdigest(), hashlib.sha256(email.encode()).hexdigest()]


def _detail_keys(record: dict) -> list[tuple]:
    """What identifies a detail, strongest first (as Apollo reads it)."""
    keys: list[tuple] = [(field, record[field]) for field in STRONG_IDS if field in record]
    name = _fold(record.get("name")) or _full_name(record)
    if name:
        orgs = [record.get("domain"), _fold(record.get("organization_name"))]
        keys += [("name", name, org) for org in orgs if org]
    return keys


def _found_by(record: dict, person: dict) -> bool:
    """Whether one of the detail's own keys finds ``person`` (``_person_keys`` holds it); the name + company keys,
    the costly ones, are worked out only when no identifier found the person and the detail has a name."""
    asked = set(_detail_keys(record))
    if _strong_keys(person, {key[0] for key in asked}) & asked:  # (only the kinds asked are worked out)
        return True
    return any(key[0] == "name" for key in asked) and bool(_name_keys(person) & asked)


def _person_keys(person: dict) -> set[tuple]:
    """Every key a detail could have found this person by."""
    return _strong_keys(person) | _name_keys(person)


def _strong_keys(person: dict, kinds: Container[str] = STRONG_IDS) -> set[tuple]:
    """The keys of a person's identifiers of ``kinds``: Apollo id, e-mails (and their hashes), LinkedIn URL."""
    keys: set[tuple] = set()
    pid = nz.normalize_apollo_id(person.get("id"))[0] if "id" in kinds else None
    if pid:
        keys.add(("id", pid))
    personal = person.get("personal_emails")
    emails = [person.get("email"), *(personal if isinstance(personal, list) else [])]
    for raw in emails if "email" in kinds or "hashed_email" in kinds else ():
        email = nz.normalize_email(raw)[0]
        if email:
            keys.add(("email", email))
            keys.update(("hashed_email", h) for h in (_hashes(email) if "hashed_email" in kinds else ()))
    linkedin = nz.normalize_linkedin_url(person.get("linkedin_url"))[0] if "linkedin_url" in kinds else None
    if linkedin:
        keys.add(("linkedin_url", linkedin))
    return keys


def _name_keys(person: dict) -> set[tuple]:
    """The keys of a person's name with each of their organisation's domains and folded name."""
    names = {name for name in (_fold(person.get("name")), _full_name(person)) if name}
    orgs = _person_orgs(person) if names else set()
    return {("name", name, org) for name in names for org in orgs}


def _person_orgs(person: dict) -> set[str]:
    """The domains and folded name of a person's organisation (and the domain of their e-mail)."""
    org = person.get("organization")
    org = org if isinstance(org, dict) else {}
    found = {nz.normalize_domain(org.get(k))[0] for k in ("primary_domain", "website_url")}
    email = nz.normalize_email(person.get("email"))[0]
    found.add(email.rpartition("@")[2] if email else None)
    found.add(_fold(org.get("name")))
    return {f for f in found if f}


def _attribute(records: list[dict], people: list[dict]) -> tuple[list[int | None], set[int]]:
    """(per detail: the person it found, or None; the details more than one person would fit)."""
    keys = [_person_keys(p) for p in people]
    found: list[int | None] = [None] * len(records)
    ambiguous: set[int] = set()
    for i, record in enumerate(records):
        for key in _detail_keys(record):  # the strongest key that finds anyone decides
            hits = [n for n, k in enumerate(keys) if key in k]
            if len(hits) == 1:
                found[i] = hits[0]
            elif hits:
                ambiguous.add(i)
            if hits:
                break
    return found, ambiguous


def align(records: list[dict], people: list[dict], credits: Any) -> Parsed:
    """Match each returned person to the detail that found it, by identity; the details left are misses.

    When a person fits no detail (Apollo matched on something we cannot see, a rewritten e-mail...)
    or a detail fits several, those details cannot be told from misses: their rows end ``error``
    with the reason (nothing cached for them, so a re-run asks again), and every person left over
    is kept (cached under its own id / e-mail / LinkedIn URL) and reported as unattributed.
    """
    found, ambiguous = _attribute(records, people)
    used = {n for n in found if n is not None}
    left = [n for n in range(len(people)) if n not in used]
    results = [people[n] if n is not None else None for n in found]
    if not left and not ambiguous:
        return Parsed(results, credits)
    unsure = [i for i, n in enumerate(found) if n is None and (left or i in ambiguous)]
    reason = (
        f"bulk_match left its misses out and returned {len(left)} person(s) that match no detail of this batch "
        f"by id, e-mail, LinkedIn URL or name + company: this row may be one of them or a miss. They are kept "
        f"(cached under their own ids, listed in attrs['apollo']['unattributed']); the credits are recorded."
    )
    errors = {i: reason for i in unsure}
    errors.update({i: "bulk_match left its misses out and several returned people fit this row" for i in ambiguous})
    requested = [records[i] for i in sorted(errors)]
    share = _share(credits, len(people))
    extra = [Unattributed(people[n], _report(people[n], share, requested), _identities(people[n])) for n in left]
    return Parsed([None if i in errors else r for i, r in enumerate(results)], credits, errors, extra)


def _share(credits: Any, people: int) -> float:
    """One person's part of a batch's reported credits (1, Apollo's price, when the figure is not a number)."""
    believable = isinstance(credits, (int, float)) and not isinstance(credits, bool) and 0 <= credits < float("inf")
    return float(credits) / people if believable and people else 1.0


def _report(person: dict, credits: float, requested: list[dict]) -> dict:
    """What attrs["apollo"]["unattributed"] says of a person no detail could be matched to."""
    seen = {k: person.get(k) for k in ("id", "name", "email", "linkedin_url") if person.get(k)}
    return {"endpoint": ENDPOINT, **seen, "credits": credits, "requested": requested}


def _worst(options: dict) -> float:
    return 1.0 + phone_worst(options)


def _credit_types(options: dict) -> dict[str, float]:
    """A person's worst case by Apollo credit type: the match is a lead credit, a mobile direct-dial credits."""
    return {"lead_credit": 1.0, "direct_dial_credit": phone_worst(options)}


def _identities(person: dict, fields: tuple[str, ...] = ("id", "email", "linkedin_url")) -> list[dict]:
    """Identities a person answer can be cached under (as :func:`person_record` gives them)."""
    found = [(field, _NORMALIZERS[field](person.get(field))[0]) for field in fields]
    return [{field: value} for field, value in found if value]


def _aliases(person: dict) -> list[dict]:
    """A matched person is also stored under every identifier the answer proves, normalised as inputs are: its
    Apollo id, e-mail and LinkedIn URL. A later row naming the person by any one of them is served from the store."""
    return _identities(person)


OPERATION = Operation(
    name="enrich_people",
    endpoint=ENDPOINT,
    batch_size=BATCH_SIZE,
    build_payload=_payload,
    parse=_parse,
    worst_credits=_worst,
    credit_types=_credit_types,
    flatten=flatten_people,
    aliases=_aliases,
)


def people_options(
    reveal_personal_emails: bool = False,
    reveal_phone_number: bool = False,
    webhook_url: str | None = None,
    waterfall: bool = False,
) -> dict:
    """Validate the reveal options; they are part of the cache key (webhook_url is not).

    Phones and waterfall results arrive later: at ``webhook_url`` when given, else by polling
    (``poll_only``; see :mod:`apollo_frames.ops.phones`).
    """
    flags = (
        ("reveal_personal_emails", reveal_personal_emails),
        ("reveal_phone_number", reveal_phone_number),
        ("waterfall", waterfall),
    )
    for name, value in flags:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    if webhook_url is not None and (
        not isinstance(webhook_url, str) or not webhook_url.startswith(("https://", "http://"))
    ):
        raise InputError(f"webhook_url must be an http(s) URL, got {webhook_url!r}")
    options = {"reveal_personal_emails": reveal_personal_emails, "reveal_phone_number": reveal_phone_number}
    if waterfall:  # only then, so the cache keys of runs without it stay what they were
        options.update(dict.fromkeys(WATERFALL_FLAGS, True))
    return options


def stored_answer_keys(frame: pd.DataFrame, client: ApolloClient) -> list[str]:
    """Every cache key an asynchronous (phone or waterfall) answer of ``frame``'s rows may be stored under."""
    own = [c for c in frame.columns if not (isinstance(c, str) and c.startswith(("person.", "org.", "apollo_")))]
    identities = [i for i in prepare_people(frame[own]).identities if i is not None]
    ids = frame["person.id"].dropna().astype(str).unique().tolist() if "person.id" in frame.columns else []
    identities += [{"id": i} for i in ids]
    keys: set[str] = set()
    for emails in (False, True):
        for phone, waterfall in ((True, False), (False, True), (True, True)):
            options = people_options(emails, phone, waterfall=waterfall)
            keys.update(client.cache.key(ENDPOINT, identity, options) for identity in identities)
    return sorted(keys)


def people_job(
    frame: pd.DataFrame,
    columns: Columns = None,
    reveal_personal_emails: bool = False,
    reveal_phone_number: bool = False,
    webhook_url: str | None = None,
    on_conflict: str = "flag",
    waterfall: bool = False,
    allow_dnc: bool = False,
) -> tuple[Prepared, Operation, dict]:
    """What enriching ``frame`` sends: the prepared rows, the operation and its options (checked here)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"enrich_people needs a pandas DataFrame, got {type(frame).__name__}")
    if not isinstance(allow_dnc, bool):
        raise TypeError(f"allow_dnc must be True or False, got {allow_dnc!r}")
    options = people_options(reveal_personal_emails, reveal_phone_number, webhook_url, waterfall)
    if webhook_url:
        op = _with_webhook(webhook_url)
    else:
        op = polling(OPERATION) if is_async(options) else OPERATION
    op = dataclasses.replace(op, review=reviewer(frame, check_on_conflict(on_conflict)),
                             shown=functools.partial(shown_phones, allow_dnc=allow_dnc))
    return prepare_people(frame, columns), op, options


def _schema(options: Mapping[str, Any]) -> pa.Schema:
    polled = (options.get("reveal_phone_number") or options.get("waterfall")) and not options.get("webhook_url")
    return text_schema((*STATUS_COLUMNS, FLAG_COLUMN, *(ASYNC_COLUMNS if polled else ())), PERSON_SCHEMA)


def enrich_people(
    frame: pd.DataFrame,
    *,
    columns: Columns = None,
    reveal_personal_emails: bool = False,
    reveal_phone_number: bool = False,
    webhook_url: str | None = None,
    max_credits: float | None = None,
    refresh: bool = False,
    progress: bool = True,
    client: ApolloClient | None = None,
    ledger: Ledger | None = None,
    confirm_over: float | None = None,
    on_conflict: str = "flag",
    waterfall: bool = False,
    suppress: Any = None,
    max_age: Any = None,
    allow_dnc: bool = False,
) -> pd.DataFrame:
    """Enrich every row of ``frame`` with Apollo's person record; see the README for the output contract.

    ``max_age`` (a timedelta, seconds or text such as ``"90d"``): stored answers older than that are fetched
    again (the previous answer is kept: ``result.apollo.changes()`` lists what changed).

    ``apollo_match_flags`` compares each answer with its row (see :mod:`apollo_frames.ops.quality`);
    ``on_conflict="reject"`` gives a contradicting match the status ``conflict`` (its credit is spent).
    ``reveal_phone_number`` / ``waterfall`` (``run_waterfall_email`` and ``run_waterfall_phone``) without
    ``webhook_url`` poll: rows get ``apollo_request_id`` and ``apollo_async_status``; fetch the results
    with ``result.apollo.collect()`` (:mod:`apollo_frames.ops.phones`).
    ``allow_dnc``: show numbers flagged do-not-call in ``person.mobile_phone`` (by default a number whose
    ``dnc_status_cd`` is anything but null, ``not_found`` or ``not_on_dnc`` is left out; ``person.phone_numbers``
    keeps every number with its status; ``result.apollo.report()`` counts those left out).

    ``columns``: ``{column: field}`` overrides of the recognised columns (``None`` leaves a column out);
    ``reveal_personal_emails`` asks Apollo for personal e-mails too. ``max_credits`` caps what the call may spend
    (rows past it are ``skipped``); ``confirm_over`` asks first (or refuses, when nobody can be asked) when the
    worst case is above it; ``refresh=True`` fetches again even what is stored; ``max_age`` fetches again what was
    stored longer ago; ``suppress`` names identifiers never sent, stored or returned (values, a file, a column);
    ``ledger`` is where the spend is recorded (default: the client's); ``progress`` shows a bar and the summary
    line; ``client`` is the client to use (default: the session's, else one built from the environment). These are
    checked once, before anything is read or sent (:class:`~apollo_frames.engine.options.RunOptions`).

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> leads = pd.DataFrame({"Email": ["mary.wright@sable-health.example", "not an email"]})
    >>> out = af.enrich_people(leads, max_credits=10, progress=False)
    >>> out["apollo_status"].tolist(), out["apollo_error_code"].tolist()
    (['matched', 'invalid'], [<NA>, 'no_identifier'])
    >>> out["person.last_name"][0]
    'Wright'
    """
    run = RunOptions(max_credits=max_credits, refresh=refresh, progress=progress, confirm_over=confirm_over,
                     max_age=max_age, suppress=suppress, ledger=ledger)
    prepared, op, options = people_job(
        frame, columns, reveal_personal_emails, reveal_phone_number, webhook_url, on_conflict, waterfall, allow_dnc
    )
    with client_scope(client) as api:
        return run_operation(frame, prepared, op, options, client=api, run=run)


def _with_webhook(webhook_url: str) -> Operation:
    """The same operation, with the webhook URL added to every request body (not to the cache key)."""

    def payload(records: list[dict], options: dict) -> dict:
        return dict(_payload(records, options), webhook_url=webhook_url)

    return dataclasses.replace(OPERATION, build_payload=payload)


SPEC = register(
    Spec(
        name="enrich_people",
        kind="enrich",
        function=enrich_people,
        job=people_job,
        options=("columns", "reveal_personal_emails", "reveal_phone_number", "webhook_url", "on_conflict", "waterfall",
                 "allow_dnc"),
        schema=_schema,
        commands=(
            Command(
                "enrich-people",
                "enrich a table of people (people/bulk_match)",
                flags=("reveal_phone_number", "waterfall"),
            ),
        ),
    )
)
