"""People enrichment through POST people/bulk_match (10 records a call)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from apollo_frames.client.http import ApolloClient, client_scope, unusable_answer
from apollo_frames.client.ledger import Ledger
from apollo_frames.core import normalize as nz
from apollo_frames.core.columns import PEOPLE, resolve
from apollo_frames.core.errors import ApolloError
from apollo_frames.core.schema import PERSON_SCHEMA, flatten_people
from apollo_frames.engine.assemble import STATUS_COLUMNS, text_schema
from apollo_frames.engine.runner import Operation, Prepared, run_operation
from apollo_frames.ops.registry import Command, Spec, register

ENDPOINT = "people/bulk_match"
BATCH_SIZE = 10
PHONE_CREDITS = 8

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
INVALID_REASON = (
    "no usable identifier: need an email, hashed_email, linkedin_url or Apollo id, "
    "or a name (first+last or full) with a domain or organization_name"
)


#: field -> the column fast path of its normaliser (None: only missing values are decided a column at a time)
_FAST_KINDS = {"id": "id", "email": "email", "first_name": "name", "last_name": "name", "name": "name",
               "organization_name": "name"}


def person_record(values: dict[str, Any]) -> tuple[dict | None, dict | None, str | None]:
    """(record to send, identity for dedupe and cache, reason if invalid) for one row."""
    record: dict[str, str] = {}
    problems: list[str] = []
    for field, raw in values.items():
        value, why = _NORMALIZERS[field](raw)
        if value is not None:
            record[field] = value
        elif why:
            problems.append(f"{field}: {why}")
    return identify(record, problems)


def identify(record: dict[str, str], problems: list[str]) -> tuple[dict | None, dict | None, str | None]:
    """(record, identity, None) for a normalised record that names a person; else (None, None, reason)."""
    for field in STRONG_IDS:
        if field in record:
            return record, {field: record[field]}, None
    has_name = ("first_name" in record and "last_name" in record) or "name" in record
    has_org = "domain" in record or "organization_name" in record
    if has_name and has_org:
        identity = {
            k: record[k].casefold() for k in ("first_name", "last_name", "name", "domain", "organization_name") if k in record
        }
        return record, identity, None
    if has_name:
        problems.insert(0, "a name alone is not enough: add a domain or organization_name")
    return None, None, INVALID_REASON + ("; " + "; ".join(problems) if problems else "")


def _plain_columns(
    fields: list[str], fast: list[tuple[list[str | None], list[bool]]]
) -> tuple[list, list, list, list[str | None]] | None:
    """(records, identities, reasons, identity texts) when every value was decided, none is missing and the
    strongest identifier supplied is an e-mail or Apollo id: what :func:`identify` gives each row, built by
    columns. None otherwise."""
    strong = next((f for f in STRONG_IDS if f in fields), None)
    if strong not in ("id", "email") or not all(all(ok) for _, ok in fast):
        return None
    columns = [values for values, _ in fast]
    if any(None in values for values in columns):
        return None
    ids = columns[fields.index(strong)]
    records = [dict(zip(fields, row, strict=True)) for row in zip(*columns, strict=True)]
    return records, [{strong: v} for v in ids], [None] * len(ids), [f'{{"{strong}":"{v}"}}' for v in ids]


def prepare_people(frame: pd.DataFrame, columns: dict[str, str] | None = None) -> Prepared:
    """Map the frame's columns and normalise every row into a bulk_match detail.

    A field several columns supply takes, per row, the first non-empty of them
    (see ``apollo_frames.core.columns``); the mapping is kept as ``prepared.columns``.
    Each column is first normalised a column at a time (``normalize_fast``); a row
    with any value that path cannot decide goes through :func:`person_record`.
    """
    mapping = resolve(frame.columns, PEOPLE, columns)
    series = mapping.values(frame)
    fields = list(series)
    fast = [nz.normalize_fast(series[field], _FAST_KINDS.get(field)) for field in fields]
    plain = _plain_columns(fields, fast)
    if plain is not None:
        records, identities, reasons, texts = plain
        return Prepared(records, identities, reasons, columns=mapping, identity_texts=texts)
    decided = [all(row) for row in zip(*(ok for _, ok in fast), strict=True)] if fields else [False] * len(frame)
    prepared = Prepared([], [], [], columns=mapping, identity_texts=[])
    add_record, add_identity, add_reason = prepared.records.append, prepared.identities.append, prepared.reasons.append
    add_text = prepared.identity_texts.append  # type: ignore[union-attr]
    rows = zip(*(v for v, _ in fast), strict=True) if fields else [()] * len(frame)
    for i, (sure, values) in enumerate(zip(decided, rows, strict=True)):
        text = None
        if sure:
            known = {f: v for f, v in zip(fields, values, strict=True) if v is not None}
            record, identity, reason = identify(known, [])
            if identity is not None and len(identity) == 1 and ("email" in identity or "id" in identity):
                ((field, value),) = identity.items()
                text = f'{{"{field}":"{value}"}}'  # the fast path's e-mails and ids need no JSON escaping
        else:
            record, identity, reason = person_record({field: series[field][i] for field in fields})
        add_record(record)
        add_identity(identity)
        add_reason(reason)
        add_text(text)
    return prepared


def _payload(records: list[dict], options: dict) -> dict:
    body: dict[str, Any] = {"details": records}
    body.update({k: v for k, v in options.items() if v})
    return body


def _parse(records: list[dict], data: Any) -> tuple[list[dict | None], Any]:
    """One person (or None for a miss) per detail, and the credits Apollo reports (the runner checks the figure).

    An answer not in the documented shape (``matches`` not a list, a string
    where a person should be) is an error for the whole batch: nothing of it
    is cached, so no row is ever stored as a no-match on a malformed answer.
    """
    matches = data.get("matches") if isinstance(data, dict) else None
    if not isinstance(matches, list):
        raise unusable_answer(ENDPOINT, f"'matches' is {type(matches).__name__}, not a list of people")
    if len(matches) != len(records):
        raise ApolloError(
            f"bulk_match answered {len(matches)} matches for {len(records)} details; cannot align them"
        )
    for i, match in enumerate(matches):
        if match is not None and not isinstance(match, dict):
            raise unusable_answer(ENDPOINT, f"match {i} is {type(match).__name__}, not a person or null")
    credits = data.get("credits_consumed")
    if credits is None:  # not reported: Apollo charges 1 per match
        credits = sum(1 for m in matches if m)
    return list(matches), credits


def _worst(options: dict) -> float:
    return 1.0 + (PHONE_CREDITS if options.get("reveal_phone_number") else 0)


OPERATION = Operation(
    name="enrich_people",
    endpoint=ENDPOINT,
    batch_size=BATCH_SIZE,
    build_payload=_payload,
    parse=_parse,
    worst_credits=_worst,
    flatten=flatten_people,
    aliases=lambda person: [{"id": i} for i in [nz.normalize_apollo_id(person.get("id"))[0]] if i],
)


def people_options(reveal_personal_emails: bool = False, reveal_phone_number: bool = False, webhook_url: str | None = None) -> dict:
    """Validate the reveal options; they are part of the cache key (webhook_url is not)."""
    for name, value in (("reveal_personal_emails", reveal_personal_emails), ("reveal_phone_number", reveal_phone_number)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    if reveal_phone_number and not webhook_url:
        raise ValueError(
            "reveal_phone_number=True needs webhook_url: Apollo delivers phone numbers to a webhook "
            "minutes later, not in the response."
        )
    if webhook_url is not None and (not isinstance(webhook_url, str) or not webhook_url.startswith(("https://", "http://"))):
        raise ValueError(f"webhook_url must be an http(s) URL, got {webhook_url!r}")
    return {"reveal_personal_emails": reveal_personal_emails, "reveal_phone_number": reveal_phone_number}


def people_job(
    frame: pd.DataFrame,
    columns: dict[str, str] | None = None,
    reveal_personal_emails: bool = False,
    reveal_phone_number: bool = False,
    webhook_url: str | None = None,
) -> tuple[Prepared, Operation, dict]:
    """What enriching ``frame`` sends: the prepared rows, the operation and its options (checked here)."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"enrich_people needs a pandas DataFrame, got {type(frame).__name__}")
    options = people_options(reveal_personal_emails, reveal_phone_number, webhook_url)
    op = _with_webhook(webhook_url) if webhook_url else OPERATION
    return prepare_people(frame, columns), op, options


def enrich_people(
    frame: pd.DataFrame,
    columns: dict[str, str] | None = None,
    reveal_personal_emails: bool = False,
    reveal_phone_number: bool = False,
    webhook_url: str | None = None,
    max_credits: float | None = None,
    refresh: bool = False,
    progress: bool = True,
    client: ApolloClient | None = None,
    ledger: Ledger | None = None,
    confirm_over: float | None = None,
) -> pd.DataFrame:
    """Enrich every row of ``frame`` with Apollo's person record; see the README for the output contract."""
    prepared, op, options = people_job(frame, columns, reveal_personal_emails, reveal_phone_number, webhook_url)
    with client_scope(client) as api:
        return run_operation(
            frame, prepared, op, options, client=api, max_credits=max_credits, refresh=refresh,
            progress=progress, ledger=ledger, confirm_over=confirm_over,
        )


def _with_webhook(webhook_url: str) -> Operation:
    """The same operation, with the webhook URL added to every request body (not to the cache key)."""

    def payload(records: list[dict], options: dict) -> dict:
        return dict(_payload(records, options), webhook_url=webhook_url)

    return dataclasses.replace(OPERATION, build_payload=payload)


#: reveal_phone_number needs a webhook to run, not to estimate: the webhook is not part of the cache key.
_ESTIMATE_WEBHOOK = "https://estimate.invalid/webhook"


def _estimate_options(options: dict) -> dict:
    """estimate's options -> people_job's: pricing a phone reveal needs no real webhook."""
    if options.get("reveal_phone_number") is True and not options.get("webhook_url"):
        return dict(options, webhook_url=_ESTIMATE_WEBHOOK)
    return options


SPEC = register(Spec(
    name="enrich_people",
    kind="enrich",
    function=enrich_people,
    job=people_job,
    options=("columns", "reveal_personal_emails", "reveal_phone_number", "webhook_url"),
    schema=lambda options: text_schema(STATUS_COLUMNS, PERSON_SCHEMA),
    estimate_options=_estimate_options,
    commands=(Command("enrich-people", "enrich a table of people (people/bulk_match)"),),
))
