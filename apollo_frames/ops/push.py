"""Reverse ETL: push a DataFrame's rows to Apollo as contacts or accounts.

Three modes, as in the usual warehouse-to-Apollo syncs:

* ``insert``: ``POST {contacts|accounts}/bulk_create``, at most 100 records a
  call. Records Apollo already has come back in ``existing_*`` unmodified and
  their rows end ``existing``.
* ``update``: every row carries the Apollo id of its record (an ``id``
  column, ``apollo_id`` from an earlier push, or ``columns={"col": "id"}``).
  Rows go to ``POST {contacts|accounts}/bulk_update`` (``contact_attributes``
  / ``account_attributes``), at most 100 a call so that Apollo answers at
  once (it takes 1,000 but processes more than 100 asynchronously). A row with
  a field bulk_update does not take (``Target.bulk_update_fields``: a contact's
  phone, stage, website or ``label_names``; an account's domain, phone or
  address) is sent alone to ``PATCH {contacts|accounts}/{id}``, and so are
  the rows of a bulk_update the server refuses as an endpoint (404/405: from
  then on the run PATCHes) or rejects (422, all or nothing: the rows it names
  are PATCHed, each getting its own answer, the others resent once in bulk),
  and a row its answer leaves out. Accounts fall back to the legacy ``PUT``
  when a ``PATCH`` is answered 404 or 405 and the ``PUT`` then succeeds; from
  then on the run uses ``PUT`` directly (a 404 on both verbs is an unknown id,
  and the row ends ``error``).
* ``upsert``: ``bulk_create`` first, then the ``existing`` records are
  updated as above (without their key: bulk_create found them by it) and end
  ``updated``. 1,000 contacts of which 600 exist: 10 creates + 6 updates.

Contacts and accounts differ only in data: a :class:`Target` names the
endpoints, the dedupe key (email / domain), the response keys and the
:class:`Field` table (column aliases, how a value is normalised, which key
it is sent under on create and on update).

Decisions, all visible in the report:

* **Columns.** Recognised by name by the one resolver
  (``apollo_frames.core.columns``; see :data:`CONTACT_FIELDS` /
  :data:`ACCOUNT_FIELDS`); ``columns={"their column": "field"}`` overrides,
  ``{"col": None}`` ignores a column. Several columns for one field are sent
  as the row's first non-empty of them. A column
  named ``custom.<field_id>`` (or mapped to ``"custom.<field_id>"``) is sent as
  ``typed_custom_fields[<field_id>]``. A contact's full-name column
  (``Person - Name``, ``Full Name``, ``Name``) is split by nameparser into the
  first and last name a row lacks (:func:`split_full_name`); it is never sent
  itself. Apollo ids (``id``, ``owner_id``, ``account_id``, stage ids) are
  read as 24 hex characters. A column recognised by its name whose non-empty
  values are mostly not Apollo ids (a Salesforce export's 18-character
  ``ACCOUNTID``) is another system's: it is not pushed, with one warning
  naming it and how to map it (:func:`foreign_id_columns`; the mapping
  preview lists it as ignored, with the reason). A column mapped explicitly
  with ``columns=`` is read strictly: a value that is not an Apollo id makes
  its row invalid rather than being sent. Other columns are ignored
  and listed once in a warning. Empty cells are not sent, so a push never blanks a field
  in Apollo.
* **Validation, before any write.** Contacts need an email, accounts a domain
  (the dedupe keys; in ``update`` mode the Apollo id is the key instead).
  Emails and domains are normalised as in enrichment; a malformed email,
  domain or LinkedIn URL makes the row ``invalid`` with the reason (we never
  send a value we could not read). Phones are rewritten to E.164 when
  ``phonenumbers`` can parse them (numbers without a ``+`` country code are
  read in ``default_region``, "US" by default); one it cannot parse is sent
  as the cleaned text. Contacts' ``phone`` goes to ``phone`` on bulk_create
  and to ``direct_phone`` on PATCH (the update endpoint has no plain
  ``phone``); accounts' to ``phone`` on both.
* **Labels.** ``labels=[...]`` is sent as ``append_label_names`` on every
  bulk_create, so records the push creates carry them. It is not sent on
  updates: Apollo's PATCH ``label_names`` replaces a record's whole label set.
* **Only fields Apollo takes.** Apollo ignores a field an endpoint does not
  take and answers success. A field no endpoint of the mode takes (accounts'
  ``industry``) is never sent: mapped explicitly it is refused, recognised by
  name it is warned about and listed in ``attrs["apollo"]["not_pushed"]``.
  A contact ``label_names`` column (a list, or text split on ``,`` / ``;``)
  is that explicit full set: on PATCH it is sent as ``label_names`` (with
  ``labels=`` added); on bulk_create rows are batched per distinct label set,
  each batch with its own ``append_label_names``.
* **Duplicates in the frame.** A row repeating a key already in the frame
  is ``duplicate``, not sent; its ``apollo_id`` is the first occurrence's and
  ``apollo_error`` names the first row's index label.
* **Retries and unknown outcomes.** ``bulk_create`` is not idempotent. With
  ``run_dedupe=True`` it is made so by Apollo (a resent record comes back as
  existing), so the request is sent with ``idempotent=True`` and the client's
  retry policy (backoff, ``max_retries``) resends a batch whose outcome is
  unknown (timeout, dropped connection, 5xx). With ``run_dedupe=False`` it is
  sent with ``idempotent=False``: never resent once it may have reached
  Apollo, and its rows end ``error`` with a message saying the outcome is
  unknown and how to reconcile. Such a batch is journaled before it is sent
  (:mod:`apollo_frames.ops.journal`), so the same push run again (after a lost
  answer or a kill) looks its rows up first (:mod:`apollo_frames.ops.lookup`):
  those found end ``created`` with the record found, the rest are created.
  Updates (PATCH/PUT of the same fields) are idempotent and retried by the client.
* **Lost writes reported as created.** When a batch needed more than one
  attempt, an earlier attempt may have created records that the successful
  attempt returns as ``existing``. Such a record is reported ``created`` when
  its ``created_at`` is not earlier than the moment this batch was first sent
  (on Apollo's clock, estimated from the answer's ``Date`` header when there
  is one, less :data:`CLOCK_SKEW_S` for resolution and skew): run_dedupe
  returns existing records unchanged, so a record created after we sent the
  batch and matching its key is our write. The rows then say what this push
  did, and upsert does not PATCH a record it has just written. Without a
  readable ``created_at`` the row stays ``existing`` (the safe reading: in
  upsert it is then updated with the same fields). The limit: a record that
  someone else created in the same couple of seconds, in a batch that needed
  a retry, would also be called ``created``.
* **Joining answers to rows** is by the dedupe key (normalised email /
  domain), never by position; a record Apollo matched on something else (a
  contact by name + company, an account by name) is joined on that as a
  fallback. A row whose record is in neither list ends ``error``.
* **Stops.** 401/403 stop the run and raise the typed error (accounts with a
  scoped key: :class:`PermissionDeniedError` saying a master key is needed);
  the report of what was done so far is on the exception as
  ``partial_result``. A 429 beyond the client's wait cap stops sending: the
  rows not sent are ``skipped``. Any other failure marks the rows of its
  batch (or its update) ``error`` and the run goes on.
* ``dry_run=True`` sends nothing (no client is opened): each row gets the
  status it would try for (``would_create`` / ``would_update``, or
  ``invalid`` / ``duplicate``), ``apollo_payload`` holds the JSON each row
  would be sent as, and ``attrs["apollo"]["planned_requests"]`` counts the
  requests (upsert: the bulk calls; ``planned_requests_max`` adds one update
  per row, if every record already existed).

Writes cost no credits but count against rate limits; every request goes
through the client, which paces them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from apollo_frames.client.http import ApolloClient, client_scope
from apollo_frames.core import normalize as nz
from apollo_frames.core.columns import (
    LEFT_OUT,
    OVERRIDE,
    PERSON_ALIASES,
    ColumnMapping,
    ColumnMappingError,
    Columns,
    FieldSpec,
    FieldTable,
    coalesce,
    resolve,
)
from apollo_frames.core.errors import (
    APIConnectionError,
    APIStatusError,
    ApolloError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    PushInterrupted,
    warn,
)
from apollo_frames.core.reasons import code_of, codes_of, error_code, tagged
from apollo_frames.engine.assemble import ERROR_CODE_COLUMN, assemble_frame, new_columns, text_schema
from apollo_frames.engine.executor import Executor, Failure, Outcome, StopSignal
from apollo_frames.engine.options import RunOptions
from apollo_frames.engine.progress import progress_bar
from apollo_frames.engine.summary import Summary, announce
from apollo_frames.engine.suppressing import PUSH_REASON, Suppressor
from apollo_frames.engine.suppressing import STATUS as SUPPRESSED
from apollo_frames.ops.journal import SENT, SETTLED, PushJournal, fingerprint
from apollo_frames.ops.lookup import created_since, parse_time
from apollo_frames.ops.phones import do_not_call, listed_numbers
from apollo_frames.ops.registry import Command, Spec, register

__all__ = [
    "push_contacts",
    "push_accounts",
    "PUSH_STATUSES",
    "DRY_RUN_STATUSES",
    "CONTACT_FIELDS",
    "ACCOUNT_FIELDS",
    "PushSummary",
]

MODES = ("upsert", "insert", "update")
BULK_LIMIT = 100
#: Allowance, in seconds, for clock resolution and skew when telling a lost write from an older record.
CLOCK_SKEW_S = 2.0
PUSH_STATUSES = ("created", "existing", "updated", "invalid", "duplicate", "error", "skipped", "suppressed")
DRY_RUN_STATUSES = ("would_create", "would_update", "invalid", "duplicate", "suppressed")
OUTPUT_COLUMNS = ("apollo_status", "apollo_id", "apollo_error", ERROR_CODE_COLUMN, "apollo_payload")
#: Columns an earlier apollo_frames step wrote: replaced without a warning, never pushed.
_OWN_COLUMNS = ("apollo_status", "apollo_error", ERROR_CODE_COLUMN, "apollo_payload")
CUSTOM_PREFIX = "custom."


# -- the data that makes contacts and accounts differ ------------------------------------------


@dataclasses.dataclass(frozen=True)
class Field(FieldSpec):
    """One pushable field: the names it is recognised by (a :class:`FieldSpec`), how it is read, where it is sent."""

    #: "email", "domain", "linkedin", "phone", "labels", "apollo_id" (24 hex characters: an Apollo record's id),
    #: "full_name" (split, never sent) or "text"
    kind: str = "text"
    #: key in a bulk_create record (None: not sent on create)
    create_as: str | None = None
    #: key in a PATCH/PUT body (None: not sent on update)
    update_as: str | None = None


def _f(
    name: str,
    aliases: tuple[str, ...] = (),
    kind: str = "text",
    create_as: str | None = "=",
    update_as: str | None = "=",
) -> Field:
    return Field(
        name,
        tuple(aliases),
        kind=kind,
        create_as=name if create_as == "=" else create_as,
        update_as=name if update_as == "=" else update_as,
    )


def _id_field(kind: str) -> Field:
    """The Apollo record id that update mode sends to; never sent in a body."""
    return _f("id", ("apollo_id", "Apollo ID", f"{kind}_id", f"Apollo {kind} ID"), "apollo_id", None, None)


_PHONE = ("Phone", "Phone Number", "phone_number")
CONTACT_FIELDS: tuple[Field, ...] = (
    _id_field("contact"),  # "Apollo Contact Id" in Apollo's own export
    _f("email", PERSON_ALIASES["email"], "email"),
    _f("first_name", PERSON_ALIASES["first_name"]),
    _f("last_name", PERSON_ALIASES["last_name"]),
    # a full name is never sent: it fills first_name / last_name when the row has none (split_full_name)
    _f("name", PERSON_ALIASES["name"], "full_name", None, None),
    _f("title", ("Job Title", "Position", "Designation", "Contact Title", "Lead Title", "Person - Job title",
                 "primary_contact_title", "person.title")),
    _f("organization_name", PERSON_ALIASES["organization_name"] + ("person.organization.name",)),
    _f("phone", _PHONE + ("Direct Phone", "Work Phone", "Work Direct Phone", "First Phone", "Mobile Phone", "Mobile",
                          "Person - Phone - Work", "Person - Phone", "primary_phone", "Contact Phone", "Work Phones",
                          "Mobile Phones", "Person - Phone - Mobile", "Person - Phone - Other", "Person - Phone - Home",
                          "primary_contact_primary_phone"),
       "phone", "phone", "direct_phone"),
    _f("owner_id", ("Owner ID", "Contact Owner ID"), "apollo_id"),
    _f("contact_stage_id", ("Stage ID", "Contact Stage ID"), "apollo_id"),
    # not "Account ID": in a CRM's export that is the CRM's account id
    _f("account_id", ("Apollo Account ID",), "apollo_id"),
    _f("website_url", ("Website", "Company Website", "Website URL", "Account Website", "Company Website URL")),
    _f("linkedin_url", PERSON_ALIASES["linkedin_url"], "linkedin"),
    _f("present_raw_address", ("Address", "Location", "raw_address", "person.formatted_address")),
    _f("label_names", ("Labels", "Label", "Label Names", "Lists"), "labels", None, "label_names"),
)  # fmt: skip

ACCOUNT_FIELDS: tuple[Field, ...] = (
    _id_field("account"),  # "Apollo Account Id" in Apollo's own export
    _f("domain", PERSON_ALIASES["domain"] + ("org.primary_domain", "org.website_url"), "domain"),
    _f("name", ("Company", "Company Name", "Account Name", "Organization Name", "Organization", "Organisation Name",
                "Organisation", "Company / Account", "display_name", "lead_display_name", "org.name")),
    _f("phone", _PHONE + ("Company Phone", "Account Phone", "Organization - Phone", "org.phone"), "phone"),
    # Apollo's account endpoints take no industry (ignored silently): recognised, never sent, reported.
    _f("industry", ("Industry", "org.industry"), create_as=None, update_as=None),
    _f("raw_address", ("Address", "Company Address", "Organization - Address", "org.raw_address")),
    _f("owner_id", ("Owner ID", "Account Owner ID"), "apollo_id"),
    _f("account_stage_id", ("Stage ID", "Account Stage ID"), "apollo_id"),
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Target:
    """Everything that differs between pushing contacts and pushing accounts."""

    operation: str
    plural: str  # "contacts": the bulk_create list key and the path prefix
    singular: str  # "contact": the update response key
    key: str  # the dedupe key field
    fields: tuple[Field, ...]
    update_methods: tuple[str, ...]
    #: field tuples a returned record is joined on when the key does not match (Apollo's other dedupe rules)
    fallback_joins: tuple[tuple[str, ...], ...]
    needs_master_key: bool
    key_hint: str
    #: how to find out afterwards whether a record exists
    reconcile_hint: str
    #: the keys an item of ``<plural>/bulk_update``'s ``<singular>_attributes`` takes besides ``id``
    bulk_update_fields: frozenset[str] = frozenset()
    #: columns that list a row's phone numbers with their ``dnc_status_cd`` (enrich_people's ``person.phone_numbers``)
    dnc_columns: tuple[str, ...] = ()

    @property
    def bulk_path(self) -> str:
        return f"{self.plural}/bulk_create"

    @property
    def bulk_update_path(self) -> str:
        return f"{self.plural}/bulk_update"

    def bulk_updatable(self, body: Mapping[str, Any]) -> bool:
        """Whether ``bulk_update`` takes every key of an update body (else the record is PATCHed alone)."""
        return body.keys() <= self.bulk_update_fields

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


CONTACTS = Target(
    operation="push_contacts",
    plural="contacts",
    singular="contact",
    key="email",
    fields=CONTACT_FIELDS,
    update_methods=("PATCH",),
    fallback_joins=(("first_name", "last_name", "organization_name"),),
    needs_master_key=False,
    key_hint="contacts are matched on their email, so every row needs one",
    reconcile_hint="search contacts by email (POST contacts/search with q_keywords=<email>)",
    bulk_update_fields=frozenset(
        {
            "owner_id",
            "email",
            "organization_name",
            "title",
            "first_name",
            "last_name",
            "account_id",
            "present_raw_address",
            "linkedin_url",
            "typed_custom_fields",
        }
    ),
    dnc_columns=("person.phone_numbers", "phone_numbers"),
)
ACCOUNTS = Target(
    operation="push_accounts",
    plural="accounts",
    singular="account",
    key="domain",
    fields=ACCOUNT_FIELDS,
    update_methods=("PATCH", "PUT"),
    fallback_joins=(("name",),),
    needs_master_key=True,
    key_hint="accounts are matched on their domain, so every row needs one",
    reconcile_hint="search accounts by name (POST accounts/search with q_organization_name=<name>) and compare domains",
    bulk_update_fields=frozenset({"name", "owner_id", "account_stage_id", "typed_custom_fields"}),
)


# -- columns -------------------------------------------------------------------------------------


def push_columns(
    labels: Sequence[object], target: Target, overrides: Mapping[object, str | None] | None = None
) -> ColumnMapping:
    """Which columns push which fields (see ``apollo_frames.core.columns``: overrides, names, coalescing)."""
    table = FieldTable(
        target.operation,
        target.fields,
        open_prefix=CUSTOM_PREFIX,
        noun=f"an Apollo {target.singular} field",
        purpose=f"an Apollo {target.singular} field",
    )
    return resolve(labels, table, overrides)


#: an id column recognised by name is pushed only when more than this share of its non-empty values are Apollo ids
APOLLO_ID_SHARE = 0.5
_APOLLO_ID = r"\s*[0-9a-fA-F]{24}\s*"


def foreign_id_columns(frame: pd.DataFrame, target: Target, mapping: ColumnMapping, mode: str) -> dict[object, str]:
    """Column -> why it is not pushed, for the columns recognised by name (not mapped with ``columns=``) as an Apollo
    id field (``owner_id``, ``account_id``, stage ids; ``id`` in update mode) whose non-empty values are mostly not
    Apollo ids: a CRM export's own ids (Salesforce's 18-character ``ACCOUNTID``) would make every row invalid.
    A column mapped explicitly keeps the strict per-row check."""
    out: dict[object, str] = {}
    for choice in mapping.choices:
        field = target.field(choice.field)
        unread = field is None or field.kind != "apollo_id" or (field.name == "id" and mode != "update")
        if choice.how == OVERRIDE or unread:  # (the id is read in update mode only)
            continue
        values = frame[choice.column]
        text = values[values.notna()].astype(str)
        text = text[text.str.strip() != ""]
        ours = int(text.str.fullmatch(_APOLLO_ID).sum())
        if len(text) and ours <= len(text) * APOLLO_ID_SHARE:
            out[choice.column] = (
                f"not Apollo ids ({len(text) - ours:,} of {len(text):,} values, e.g. {text.iloc[0].strip()[:40]!r}; "
                f"Apollo ids are 24 hex characters): {_foreign_advice(choice.column, choice.field)}"
            )
    return out


def _foreign_advice(column: object, field: str) -> str:
    """What to do about an id column left out as another system's (:func:`foreign_id_columns`)."""
    return f"another system's id? To push it as {field}, map it explicitly: columns={{{column!r}: {field!r}}}"


def push_mapping(
    frame: pd.DataFrame | Sequence[object], target: Target, overrides: Mapping[object, str | None] | None = None,
    mode: str = "upsert",
) -> ColumnMapping:
    """The columns a push of ``frame`` reads (:func:`push_columns`), less the id columns recognised by name whose
    values are not Apollo ids (:func:`foreign_id_columns`; only a DataFrame's values can tell)."""
    labels = list(frame.columns) if isinstance(frame, pd.DataFrame) else list(frame)
    mapping = push_columns(labels, target, overrides)
    if isinstance(frame, pd.DataFrame):
        mapping = mapping.without(foreign_id_columns(frame, target, mapping, mode))
    return mapping


def resolve_push_columns(
    labels: pd.DataFrame | Sequence[object], target: Target, overrides: Mapping[object, str | None] | None = None,
    mode: str = "upsert",
) -> tuple[dict[str, tuple[object, ...]], dict[str, tuple[object, ...]], list[object]]:
    """(field -> columns, custom field id -> columns, columns not pushed) for a frame (or its column labels).

    Columns are in priority order: a row sends the first non-empty of them.
    Overrides win; a plain column wins over one this toolkit wrote
    (``person.*`` / ``org.*``). Id columns recognised by name that hold
    another system's ids are not pushed (:func:`foreign_id_columns`).
    """
    return _split(push_mapping(labels, target, overrides, mode))


def _split(
    mapping: ColumnMapping,
) -> tuple[dict[str, tuple[object, ...]], dict[str, tuple[object, ...]], list[object]]:
    """(field -> columns, custom field id -> columns, columns not pushed) of a push's mapping."""
    fields: dict[str, tuple[object, ...]] = {}
    custom: dict[str, tuple[object, ...]] = {}
    for field, cols in mapping.fields.items():
        if field.startswith(CUSTOM_PREFIX):
            custom[field[len(CUSTOM_PREFIX) :]] = cols
        else:
            fields[field] = cols
    unmapped = [label for label, why in mapping.ignored if why != LEFT_OUT and label not in _OWN_COLUMNS]
    return fields, custom, unmapped


# -- values --------------------------------------------------------------------------------------


def normalize_phone(value: object, default_region: str | None = "US") -> tuple[str | None, str | None]:
    """E.164 (``+14155550100``) when phonenumbers can parse it, else the cleaned text; (None, None) if blank."""
    text, why = nz.clean_text(value, max_len=64)
    if text is None:
        return None, why
    import phonenumbers

    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return text, None
    if phonenumbers.is_possible_number(number):
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None
    return text, None


def _labels(value: object) -> tuple[list[str] | None, str | None]:
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist") and not isinstance(value, str):
        raw = value.tolist() if hasattr(value, "tolist") else value
        items: list[Any] = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    else:
        if nz.is_missing(value):
            return None, None
        text, why = nz.clean_text(value, max_len=4096)
        if text is None:
            return None, why
        items = text.replace(";", ",").split(",")
    out: list[str] = []
    for item in items:
        text, _ = nz.clean_text(item)
        if text and text not in out:
            out.append(text)
    return (out or None), None


def _custom_value(value: object) -> tuple[Any, str | None]:
    """A JSON-able scalar for typed_custom_fields: numbers stay numbers, dates become ISO text."""
    if isinstance(value, (list, tuple)):
        return [v for v in (_custom_value(x)[0] for x in value) if v is not None] or None, None
    if hasattr(value, "tolist") and not isinstance(value, str) and int(getattr(value, "ndim", 0)) > 0:
        return _custom_value(value.tolist())
    if nz.is_missing(value):
        return None, None
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return value.isoformat(), None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, bool):
        return value, None
    if isinstance(value, float):
        # an integer column with a blank in it reaches us as floats: send 3, not 3.0
        return (None if not math.isfinite(value) else int(value) if value.is_integer() else value), None
    if isinstance(value, int):
        return value, None
    return nz.clean_text(value, max_len=65535)


def _apollo_id(value: object) -> tuple[str | None, str | None]:
    """An Apollo record id (24 hex characters); another system's id (a CRM export's ``Id``) is refused, never sent."""
    text, why = nz.clean_text(value, max_len=128)
    if text is None:
        return None, why
    found, _ = nz.normalize_apollo_id(text)
    if found is not None:
        return found, None
    return None, (
        f"not an Apollo id ({text[:40]!r}; Apollo ids are 24 hex characters): another system's id? "
        f"Leave its column out with columns={{'column': None}}"
    )


_READERS: dict[str, Callable[[object], tuple[Any, str | None]]] = {
    "email": nz.normalize_email,
    "domain": nz.normalize_domain,
    "linkedin": nz.normalize_linkedin_url,
    "labels": _labels,
    "text": nz.clean_text,
    "full_name": nz.normalize_name,
    "apollo_id": _apollo_id,
}


@dataclasses.dataclass
class Row:
    """One valid, unique record to push, and the frame positions it stands for."""

    position: int
    key: str
    values: dict[str, Any]
    custom: dict[str, Any]
    record_id: str | None = None  # update mode: the Apollo id from the frame
    #: upsert: bulk_create found the existing record by this row's key, so an update need not send the key again
    matched_on_key: bool = False

    def _body(self, target: Target, verb: str) -> dict[str, Any]:
        """The values under the keys ``verb`` ("create_as" / "update_as") sends them as, then the custom fields."""
        body: dict[str, Any] = {}
        for name, value in self.values.items():
            sent_as = getattr(target.field(name), verb, None)
            if sent_as:
                body[sent_as] = value
        if self.custom:
            body["typed_custom_fields"] = dict(self.custom)
        return body

    def create_body(self, target: Target) -> dict[str, Any]:
        return self._body(target, "create_as")

    def update_body(self, target: Target, labels: Sequence[str]) -> dict[str, Any]:
        body = self._body(target, "update_as")
        if "label_names" in body and labels:
            body["label_names"] = list(dict.fromkeys([*body["label_names"], *labels]))
        key_field = target.field(target.key)
        if self.matched_on_key and key_field is not None and key_field.update_as:
            body.pop(key_field.update_as, None)  # the record was found by it: sending it again changes nothing
        return body

    def bulk_update_item(self, target: Target, labels: Sequence[str]) -> dict[str, Any] | None:
        """This row as an item of ``bulk_update`` (``id`` + its fields), or None when bulk_update cannot carry it."""
        body = self.update_body(target, labels)
        return {"id": self.record_id, **body} if target.bulk_updatable(body) else None

    def label_set(self, labels: Sequence[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*labels, *(self.values.get("label_names") or [])]))


def _read(field: Field | None, raw: object, default_region: str | None) -> tuple[Any, str | None]:
    if field is not None and field.kind == "phone":
        return normalize_phone(raw, default_region)
    return _READERS[field.kind if field is not None else "text"](raw)


def _row_values(
    target: Target, columns: Mapping[str, list], customs: Mapping[str, list], i: int, default_region: str | None
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """(field values, custom field values, problems) of row ``i``."""
    values: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    problems: list[str] = []
    for name, column in columns.items():
        value, why = _read(target.field(name), column[i], default_region)
        if value is not None:
            values[name] = value
        elif why:
            problems.append(f"{name}: {why}" if not why.startswith("invalid") else why)
    for fid, column in customs.items():
        value, why = _custom_value(column[i])
        if value is not None:
            custom[fid] = value
        elif why:
            problems.append(f"custom.{fid}: {why}")
    return values, custom, problems


def split_full_name(text: str) -> tuple[str | None, str | None]:
    """(first, last) of a full name, by nameparser: ``'Dr. Juan de la Vega III'`` -> ``('Juan', 'de la Vega')``.

    Titles, suffixes and middle names are dropped (a contact has no field for
    them); ``'Doe, Jane'`` is read last-name first. A single word is a first name.
    """
    from nameparser import HumanName  # here: its tables cost ~40 ms, paid only by a push that splits names

    parsed = HumanName(text)
    return parsed.first or None, parsed.last or None


def _fill_names(target: Target, values: dict[str, Any]) -> None:
    """Replace a row's full name by the first and last name it lacks (never overriding its own)."""
    field = target.field("name")
    if field is None or field.kind != "full_name" or "name" not in values:
        return
    full = values.pop("name")
    first, last = split_full_name(full)
    if first and "first_name" not in values:
        values["first_name"] = first
    if last and "last_name" not in values:
        values["last_name"] = last


def _no_key(target: Target, key_field: str) -> str:
    if key_field == "id":
        return (
            f"no Apollo {target.singular} id: update mode sends each row to PATCH "
            f"{target.plural}/{{id}}; give an 'id' column or columns={{'col': 'id'}}"
        )
    return f"no {target.key}: {target.key_hint}"


def prepare_rows(
    frame: pd.DataFrame,
    target: Target,
    mode: str,
    mapping: Mapping[str, Sequence[object]],
    custom_columns: Mapping[str, Sequence[object]],
    default_region: str | None,
) -> tuple[list[Row | None], list[str | None]]:
    """Per input row: a :class:`Row` or None, and the reason when None (invalid).

    A field with several columns takes the row's first non-empty value of them.
    """

    def read(cols: Sequence[object]) -> list:
        return coalesce([frame[c].tolist() for c in cols])

    # bulk_create has no use for the id
    columns = {name: read(cols) for name, cols in mapping.items() if name != "id" or mode == "update"}
    customs = {fid: read(cols) for fid, cols in custom_columns.items()}
    key_field = "id" if mode == "update" else target.key
    rows: list[Row | None] = []
    reasons: list[str | None] = []
    for i in range(len(frame)):
        values, custom, problems = _row_values(target, columns, customs, i, default_region)
        _fill_names(target, values)
        key = values.get(key_field)
        if key is None and not any(p.startswith((f"{key_field}:", f"invalid {key_field}")) for p in problems):
            problems.insert(0, _no_key(target, key_field))
        if problems or key is None:
            rows.append(None)
            reasons.append(tagged("no_key" if key is None else "invalid_value", "; ".join(problems)))
            continue
        record_id = values.pop("id", None) if mode == "update" else None
        rows.append(Row(i, key, values, custom, record_id))
        reasons.append(None)
    return rows, reasons


def plan_batches(rows: list[Row], labels: Sequence[str]) -> list[tuple[tuple[str, ...], list[Row]]]:
    """bulk_create batches: at most 100 records, one label set (``append_label_names``) per batch."""
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(row.label_set(labels), []).append(row)
    return [(key, group[i : i + BULK_LIMIT]) for key, group in groups.items() for i in range(0, len(group), BULK_LIMIT)]


# -- the summary ---------------------------------------------------------------------------------


@dataclasses.dataclass(repr=False)
class PushSummary(Summary):
    """What one push did. ``to_dict()`` is ``result.attrs["apollo"]``."""

    mode: str
    dry_run: bool = False
    rows: int = 0
    sent: int = 0
    created: int = 0
    existing: int = 0
    updated: int = 0
    invalid: int = 0
    duplicate: int = 0
    errors: int = 0
    skipped: int = 0
    #: rows naming an identifier on the suppression list (or in ``suppress=``): never sent
    suppressed: int = 0
    #: phone numbers the frame flags do-not-call (``person.phone_numbers``): left out of the records (``allow_dnc``)
    do_not_call: int = 0
    would_create: int = 0
    would_update: int = 0
    api_calls: int = 0
    bulk_calls: int = 0
    update_calls: int = 0
    bulk_update_calls: int = 0
    #: rows an interrupted earlier run of this push had settled: reported as they ended, not sent again
    resumed: int = 0
    #: rows an interrupted run sent without its answer arriving, found in Apollo by the search: not created again
    found: int = 0
    #: rows sent without run_dedupe whose outcome is unknown (no answer, or the search failed): the run's journal
    #: stays open, so the same push looks them up before creating anything again
    unknown: int = 0
    #: mapped fields Apollo's endpoints do not take, so not pushed: {field: [column, ...]}
    not_pushed: dict = dataclasses.field(default_factory=dict)
    planned_requests: int = 0
    planned_requests_max: int = 0
    elapsed_s: float = 0.0
    run_id: str = ""

    _hidden = frozenset({"operation", "run_id", "not_pushed"})
    _sent_only = frozenset(
        {
            "created",
            "existing",
            "updated",
            "errors",
            "skipped",
            "sent",
            "api_calls",
            "bulk_calls",
            "update_calls",
            "bulk_update_calls",
            "resumed",
            "found",
            "unknown",
        }
    )
    _dry_run_only = frozenset({"would_create", "would_update", "planned_requests", "planned_requests_max"})

    def line(self) -> str:
        if self.dry_run:
            return (
                f"{self.operation} ({self.mode}, dry run): {self.rows:,} rows, {self.would_create:,} would create, "
                f"{self.would_update:,} would update, {self.invalid:,} invalid, {self.duplicate:,} duplicate | "
                f"{self.planned_requests:,} requests planned"
                + (
                    f" (up to {self.planned_requests_max:,})"
                    if self.planned_requests_max > self.planned_requests
                    else ""
                )
                + ", none sent"
            )
        return (
            f"{self.operation} ({self.mode}): {self.rows:,} rows, {self.created:,} created, "
            f"{self.existing:,} existing, {self.updated:,} updated, {self.invalid:,} invalid, "
            f"{self.duplicate:,} duplicate, {self.errors:,} errors, "
            f"{self.skipped:,} skipped | {self.sent:,} sent in {self.api_calls:,} requests "
            f"({self.bulk_calls:,} bulk, {self.bulk_update_calls:,} bulk updates, {self.update_calls:,} updates), "
            f"{self.elapsed_s:.1f} s"
            + (f" | {self.resumed:,} pushed by the interrupted run, not sent again" if self.resumed else "")
            + (f" | {self.found:,} found in Apollo after the interruption, not created again" if self.found else "")
            + (f" | {self.do_not_call:,} do-not-call numbers left out" if self.do_not_call else "")
        )

    def _title(self) -> str:
        return f"{self.operation} ({self.mode})"

    def _html_rows(self) -> list[tuple[str, str]]:
        skip = self._sent_only if self.dry_run else self._dry_run_only
        return [(name, value) for name, value in super()._html_rows() if name not in skip]


# -- the run -------------------------------------------------------------------------------------


def _server_time(headers: Mapping[str, str], sent_at: float) -> float:
    """When a batch was first sent, on Apollo's clock: from the answer's ``Date`` header when it has one."""
    from email.utils import parsedate_to_datetime

    date = next((v for k, v in headers.items() if k.lower() == "date"), None)
    if date:
        try:
            return parsedate_to_datetime(date).timestamp() - (time.time() - sent_at)
        except (TypeError, ValueError):
            pass
    return sent_at


def _join_value(target: Target, record: Mapping[str, Any], field: str) -> str | None:
    value = record.get(field)
    if field == "email":
        return nz.normalize_email(value)[0]
    if field == "domain":
        return nz.normalize_domain(value)[0]
    text = nz.clean_text(value)[0]
    return text.casefold() if text else None


def _join(target: Target, batch: list[Row], created: list[dict], existing: list[dict]) -> list[tuple[str, dict] | None]:
    """For each row of the batch: ("created"|"existing", record) or None, matched on the key, then fallbacks."""
    records = [("created", r) for r in created if isinstance(r, dict)] + [
        ("existing", r) for r in existing if isinstance(r, dict)
    ]
    out: list[tuple[str, dict] | None] = [None] * len(batch)
    used: set[int] = set()
    keys: list[Any] = [_join_value(target, record, target.key) for _, record in records]
    _join_on(records, keys, [row.key for row in batch], out, used)
    for fields in target.fallback_joins:
        if all(o is not None for o in out):
            break
        keys = [
            _record_fields(target, record, fields) if n not in used else None for n, (_, record) in enumerate(records)
        ]
        _join_on(records, keys, [_row_fields(row, fields) for row in batch], out, used)
    return out


def _record_fields(target: Target, record: Mapping[str, Any], fields: tuple[str, ...]) -> tuple | None:
    values = tuple(_join_value(target, record, f) for f in fields)
    return values if all(values) else None


def _row_fields(row: Row, fields: tuple[str, ...]) -> tuple | None:
    values = tuple((str(row.values.get(f)).casefold() if row.values.get(f) else None) for f in fields)
    return values if all(values) else None


def _join_on(
    records: list[tuple[str, dict]],
    record_keys: Sequence[Any],
    row_keys: Sequence[Any],
    out: list[tuple[str, dict] | None],
    used: set[int],
) -> None:
    """Fill the rows still unjoined whose key matches an unused record's (each record joins one row at most)."""
    index: dict[Any, int] = {}
    for n, key in enumerate(record_keys):
        if key is not None:
            index.setdefault(key, n)
    for i, key in enumerate(row_keys):
        found = index.get(key) if key is not None and out[i] is None else None
        if found is not None and found not in used:
            out[i] = records[found]
            used.add(found)


def _master_key_error(target: Target, exc: PermissionDeniedError) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"Apollo refused to write {target.plural} with this API key ({exc.status_code} on {exc.path}). Creating and "
        f"updating {target.plural} needs a master API key: make one in Apollo under Settings > Integrations > API "
        f"(or enable {target.plural} create/update for this key) and set APOLLO_API_KEY to it.",
        status_code=exc.status_code,
        path=exc.path,
        body=exc.body,
        attempts=exc.attempts,
    )


@dataclasses.dataclass
class _Bulk:
    """One bulk_create call: its rows and the label set sent with them."""

    labels: tuple[str, ...]
    rows: list[Row]


@dataclasses.dataclass
class _Update:
    """One update task: a ``bulk_update`` of up to 100 rows, or one row PATCHed alone."""

    rows: list[Row]
    bulk: bool
    #: a bulk update resent without the rows an earlier one rejected (never resent again)
    retried: bool = False


@dataclasses.dataclass
class _Updated:
    """What an update task did: the rows it settled, and the tasks it leaves (fallbacks, resends)."""

    done: list[_Done]
    again: list[_Update] = dataclasses.field(default_factory=list)


def _singles(rows: Sequence[Row]) -> list[_Update]:
    return [_Update([row], bulk=False) for row in rows]


@dataclasses.dataclass
class _Done:
    """A row's outcome in a push; ``update``: upsert's second step still has to update it."""

    row: Row
    status: str
    record_id: str | None = None
    message: str | None = None
    update: bool = False


def read_bulk_update(target: Target, rows: list[Row], data: Any) -> _Updated:
    """A bulk_update answer: rows whose record it lists are updated (or queued, when Apollo answers with an
    asynchronous job); the others are left to a PATCH each."""
    data = data if isinstance(data, dict) else {}
    listed = data.get(target.plural)
    job = data.get("entity_progress_job")
    if isinstance(listed, list):
        answered = {str(r.get("id")) for r in listed if isinstance(r, dict)}
        message = None
    elif isinstance(job, dict) and isinstance(job.get("entity_ids"), list):
        answered = {str(i) for i in job["entity_ids"]}
        message = tagged("update_queued", f"queued: Apollo applies this update asynchronously (job {job.get('id')})")
    else:
        answered, message = set(), None
    done = [_Done(row, "updated", row.record_id, message) for row in rows if row.record_id in answered]
    return _Updated(done, _singles([row for row in rows if row.record_id not in answered]))


class _Pusher:
    """One push run: bulk calls and updates on the executor; each row's outcome recorded on the calling thread."""

    def __init__(
        self,
        target: Target,
        mode: str,
        rows: list[Row],
        *,
        client,
        run_dedupe: bool,
        labels: Sequence[str],
        progress: bool,
        stop: StopSignal | None = None,
        journal: PushJournal | None = None,
        resume: Sequence[Row] = (),
        doubt: Mapping[str, float] | None = None,
        make_bar: Callable[..., Any] = progress_bar,
    ):
        self.target = target
        self.mode = mode
        self.rows = rows
        #: upsert rows an interrupted run found existing and did not update yet: straight to the update
        self.resume = list(resume)
        #: key -> when: rows an interrupted run sent without an answer (looked up before they are sent again)
        self.doubt = dict(doubt or {})
        #: rows whose outcome is unknown at the end (the journal stays open: the same push looks them up)
        self.in_doubt: set[str] = set()
        self.found = 0
        self.journal = journal
        self._kept: dict[str, dict] = {}
        self.client = client
        self.run_dedupe = run_dedupe
        self.labels = list(labels)
        self.status: dict[int, str] = {}
        self.ids: dict[int, str] = {}
        self.messages: dict[int, str] = {}
        self.bulk_calls = 0
        self.update_calls = 0
        self.bulk_update_calls = 0
        #: False once the server refused bulk_update as an endpoint (404/405): PATCH from then on
        self.bulk_update_ok = True
        self.executor = Executor.for_client(client, stop, name="apollo-push")
        self.stop = self.executor.stop
        self._lock = threading.Lock()
        self._update_method = target.update_methods[0]
        #: until one update succeeded, updates go one at a time: the verb this server takes is found once
        self._verb_known = False
        self._verb_lock = threading.Lock()
        self.bar = make_bar(total=len(rows), initial=0, desc=target.operation, unit="rec", enabled=progress)

    # outcome bookkeeping, on the calling thread
    def _set(self, done: _Done) -> None:
        position = done.row.position
        self.status[position] = done.status
        if done.record_id:
            self.ids[position] = str(done.record_id)
        if done.message:
            self.messages[position] = done.message
        elif done.status in ("created", "existing", "updated"):
            self.messages.pop(position, None)
        if self.journal is not None and done.status in SETTLED:
            self._kept[done.row.key] = {"status": done.status, "id": self.ids.get(position) or done.row.record_id,
                                        "update": done.update, "on_key": done.row.matched_on_key}

    def _journaled(self, on_done: Callable[[Any], None]) -> Callable[[Any], None]:
        """``on_done``, then what the outcome settled written to the journal (before the next outcome)."""

        def handle(done: Any) -> None:
            on_done(done)
            self._flush()

        return handle

    def _flush(self) -> None:
        """Write what the outcomes so far settled to the journal."""
        if self.journal is not None and self._kept:
            kept, self._kept = self._kept, {}
            self.journal.record(kept)

    def pushed(self) -> int:
        """Rows settled so far (created, existing, updated)."""
        return sum(status in SETTLED for status in self.status.values())

    def stop_text(self) -> str:
        """What stopped the run, as the rows not sent say it."""
        return str(self.stop.error) if self.stop.error is not None else (self.stop.reason or "the run stopped")

    def not_sent(self) -> str:
        """A row's reason when the run stopped before sending it: "not sent: " what stopped it, with its code."""
        code = error_code(self.stop.error) if self.stop.error is not None else code_of(self.stop.reason)
        return tagged(code or "not_sent", f"not sent: {self.stop_text()}")

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _refused(self, exc: PermissionDeniedError) -> PermissionDeniedError:
        return _master_key_error(self.target, exc) if self.target.needs_master_key else exc

    # the requests, on worker threads
    def bulk_body(self, labels: tuple[str, ...], batch: list[Row]) -> dict[str, Any]:
        body: dict[str, Any] = {
            self.target.plural: [row.create_body(self.target) for row in batch],
            "run_dedupe": self.run_dedupe,
        }
        if labels:
            body["append_label_names"] = list(labels)
        return body

    def send_bulk(self, bulk: _Bulk) -> list[_Done]:
        """One bulk_create; each row's outcome (rows that came back existing are marked for upsert's update)."""
        if self.stop.stopped:
            return [_Done(row, "skipped", message=self.not_sent()) for row in bulk.rows]
        sent_at = time.time()
        if self.journal is not None and not self.run_dedupe:  # before it leaves: a kill then finds it "sent"
            self.journal.sending((row.key for row in bulk.rows), sent_at)
        self._count("bulk_calls")
        try:
            response = self.client.request(
                "POST", self.target.bulk_path, json=self.bulk_body(bulk.labels, bulk.rows), idempotent=self.run_dedupe
            )
        except PermissionDeniedError as exc:
            raise self._refused(exc) from exc
        data = response.data if isinstance(response.data, dict) else {}
        fence = _server_time(response.headers, sent_at) - CLOCK_SKEW_S if response.attempts > 1 else None
        created = data.get(f"created_{self.target.plural}") or []
        existing = data.get(f"existing_{self.target.plural}") or []
        return [
            self._read(row, hit, fence)
            for row, hit in zip(bulk.rows, _join(self.target, bulk.rows, created, existing), strict=False)
        ]

    def _read(self, row: Row, hit: tuple[str, dict] | None, fence: float | None) -> _Done:
        """A row's outcome from its record in the bulk answer (``fence``: set when the batch needed a retry)."""
        target = self.target
        if hit is None:
            return _Done(
                row,
                "error",
                message=tagged(
                    "unusable_answer",
                    f"bulk_create answered without this {target.singular} ({target.key} {row.key!r}) in created_ or "
                    f"existing_{target.plural}; search {target.plural} by {target.key} before pushing it again"
                ),
            )
        kind, record = hit
        if kind == "existing" and fence is not None:
            created_at = parse_time(record.get("created_at"))
            if created_at is not None and created_at >= fence:
                kind = "created"  # written by an earlier attempt of this very batch whose answer was lost
        update = kind == "existing" and self.mode == "upsert"
        if update:
            row.matched_on_key = _join_value(target, record, target.key) == row.key
        return _Done(row, kind, record.get("id"), update=update)

    def send_update(self, row: Row) -> _Done:
        """PATCH (or the legacy PUT) one record; one at a time until a verb worked (no request wasted on the other)."""
        if self._verb_known:
            return self._send_update(row)
        with self._verb_lock:
            return self._send_update(row)

    def _send_update(self, row: Row) -> _Done:
        if self.stop.stopped:
            return _Done(row, "skipped", row.record_id, self.not_sent())
        target = self.target
        body = row.update_body(target, self.labels)
        path = f"{target.plural}/{row.record_id}"
        methods = [self._update_method] + [m for m in target.update_methods if m != self._update_method]
        for n, method in enumerate(methods):
            self._count("update_calls")
            try:
                response = self.client.request(method, path, json=body, idempotent=True)
            except PermissionDeniedError as exc:
                raise self._refused(exc) from exc
            except APIStatusError as exc:
                if n + 1 < len(methods) and exc.status_code in (404, 405):
                    continue  # legacy servers answer PATCH with 404/405: try the next verb
                raise
            self._update_method = method  # this server wants that verb: use it first from now on
            self._verb_known = True
            break
        data = response.data if isinstance(response.data, dict) else {}
        record = data.get(target.singular)
        record_id = record.get("id") if isinstance(record, dict) else None
        return _Done(row, "updated", record_id or row.record_id)

    def update_tasks(self, rows: Sequence[Row]) -> list[_Update]:
        """bulk_update batches of up to 100 for the rows it can carry; a PATCH task for each other row."""
        carried = self.bulk_update_ok
        bulk = [row for row in rows if carried and row.bulk_update_item(self.target, self.labels) is not None]
        alone = [row for row in rows if row not in bulk] if bulk else list(rows)
        batches = [_Update(bulk[i : i + BULK_LIMIT], bulk=True) for i in range(0, len(bulk), BULK_LIMIT)]
        return batches + _singles(alone)

    def send_update_task(self, task: _Update) -> _Updated:
        """One update task (on a worker thread)."""
        if not task.bulk:
            return _Updated([self.send_update(task.rows[0])])
        if self.stop.stopped:
            why = self.not_sent()
            return _Updated([_Done(row, "skipped", row.record_id, why) for row in task.rows])
        return self.send_bulk_update(task)

    def send_bulk_update(self, task: _Update) -> _Updated:
        """One ``bulk_update`` (100 records at most, so Apollo answers synchronously); PATCH what it refuses."""
        target = self.target
        items = [row.bulk_update_item(target, self.labels) for row in task.rows]
        self._count("bulk_update_calls")
        try:
            response = self.client.request(
                "POST", target.bulk_update_path, json={f"{target.singular}_attributes": items}, idempotent=True
            )
        except PermissionDeniedError as exc:
            raise self._refused(exc) from exc
        except APIStatusError as exc:
            if exc.status_code in (404, 405):  # no bulk_update on this server: PATCH, now and from now on
                self.bulk_update_ok = False
                return _Updated([], _singles(task.rows))
            if exc.status_code == 422:
                return _Updated([], self._after_rejection(task, exc))
            raise
        return read_bulk_update(self.target, task.rows, response.data)

    def _after_rejection(self, task: _Update, exc: APIStatusError) -> list[_Update]:
        """bulk_update is all or nothing: PATCH the rows it named (each then gets its own answer); resend the rest
        once."""
        details = exc.body.get("error_details") if isinstance(exc.body, dict) else None
        named = set(details) if isinstance(details, dict) else set()
        prefix = f"{self.target.singular}_attributes["
        rejected = [row for i, row in enumerate(task.rows) if row.record_id in named or f"{prefix}{i}]" in named]
        if not rejected or task.retried or len(rejected) == len(task.rows):
            return _singles(task.rows)
        rest = [row for row in task.rows if row not in rejected]
        return [_Update(rest, bulk=True, retried=True), *_singles(rejected)]

    def run_updates(self, rows: Sequence[Row]) -> None:
        """Every update on the executor: bulk batches first; fallbacks and resends join the queue as answers come."""
        queue = deque(self.update_tasks(rows))
        self.executor.run(
            lambda: queue.popleft() if queue else None,
            self.send_update_task,
            self._journaled(lambda done: self._updates_done(done, queue)),
        )

    # the outcomes, on the calling thread
    def _updates_done(self, done: Outcome[_Update, _Updated], queue: deque) -> None:
        task = done.task
        if done.value is not None:
            for one in done.value.done:
                self._set(one)
            queue.extend(done.value.again)
            if self.mode == "update":
                self.bar.update(len(done.value.done))
            return
        if self.mode == "update":
            self.bar.update(len(task.rows))
        for row in task.rows:
            status, message = self._failure(done, functools.partial(self._update_failure, row, bulk=task.bulk))
            self._set(_Done(row, status, row.record_id, message))

    def _bulk_done(self, done: Outcome[_Bulk, list[_Done]]) -> None:
        self.bar.update(len(done.task.rows))
        if done.value is not None:
            for one in done.value:
                if one.update:
                    one.row.record_id = one.record_id
                self._set(one)
            return
        status, message = self._failure(done, self._bulk_failure)
        if getattr(done.error, "outcome_unknown", False) and not self.run_dedupe:
            self.in_doubt.update(row.key for row in done.task.rows)
        for row in done.task.rows:
            self._set(_Done(row, status, message=message))

    def _failure(self, done: Outcome, explain: Callable[[ApolloError], str]) -> tuple[str, str]:
        """(status, message) for a failed task: skipped when the run stopped, else error with ``explain``'s words."""
        if not done.started:
            return "skipped", self.not_sent()
        if done.failure is Failure.ERROR and done.error is not None:
            return "error", explain(done.error)
        return "skipped", tagged(error_code(done.error), f"not sent: {done.error}")

    def _update_failure(self, row: Row, exc: ApolloError, bulk: bool = False) -> str:
        if bulk:
            return tagged(error_code(exc), f"bulk update failed: {exc}")
        if isinstance(exc, NotFoundError):
            return tagged("record_not_found", f"no {self.target.singular} with id {row.record_id!r} in Apollo: {exc}")
        return tagged(error_code(exc), f"update failed: {exc}")

    def _bulk_failure(self, exc: ApolloError) -> str:
        unknown = getattr(exc, "outcome_unknown", False)
        t = self.target
        if unknown:
            return tagged(
                "outcome_unknown",
                f"outcome unknown: {exc} This batch may or may not have been created in Apollo, and with "
                f"run_dedupe=False it was not resent (that could duplicate it). Run the same push again: it "
                f"looks these rows up first ({t.plural}/search, free) and creates only those not found; or push "
                f"them with run_dedupe=True (Apollo returns those already created as existing); or {t.reconcile_hint}."
            )
        transient = isinstance(exc, APIConnectionError) or (
            isinstance(exc, APIStatusError) and (exc.status_code >= 500 or exc.status_code == 408)
        )
        if self.run_dedupe and transient:
            return tagged(
                error_code(exc),
                f"{exc} Some of these may have been created by an attempt whose answer was lost; pushing them again "
                f"is safe with run_dedupe=True (Apollo returns those as existing)."
            )
        if isinstance(exc, APIConnectionError):  # without run_dedupe the client retries only what never reached Apollo
            return tagged(error_code(exc), f"not sent: {exc}")
        return tagged(error_code(exc), str(exc))

    def run(self) -> None:
        """insert: the bulk calls; update: the updates; upsert: the bulk calls, then the existing records' updates."""
        try:
            if self.mode == "update":
                self.run_updates(self.rows)
            else:
                resumed = {id(row) for row in self.resume}
                doubtful = [row for row in self.rows if row.key in self.doubt and id(row) not in resumed]
                fresh = [row for row in self.rows if id(row) not in resumed and row.key not in self.doubt]
                fresh += self.look_up(doubtful)
                bulks = [_Bulk(labels, batch) for labels, batch in plan_batches(fresh, self.labels)]
                outcomes = self.executor.run_tasks(bulks, self.send_bulk, self._journaled(self._bulk_done))
                existing = self.resume + [one.row for done in outcomes for one in done.value or () if one.update]
                if existing and not self.stop.stopped:
                    self.run_updates(existing)
        finally:
            self.bar.close()
        for row in self.rows:
            if row.position not in self.status:
                self._set(_Done(row, "skipped", row.record_id, self.not_sent()))

    def look_up(self, rows: list[Row]) -> list[Row]:
        """Rows an interrupted run sent without an answer: those found in Apollo end ``created`` with the record
        found (not sent again); the rows returned were not created and are sent. A failed search leaves them all
        unknown (``error``; the journal stays open, so the same push looks them up again)."""
        if not rows:
            return []
        t = self.target
        try:
            if self.stop.stopped:
                raise ApolloError(self.stop_text())
            found = created_since(self.client, t.plural, t.singular, min(self.doubt[r.key] for r in rows),
                                  {r.key for r in rows}, lambda record: _join_value(t, record, t.key))
            why = "the search did not reach back to when they were sent"
        except ApolloError as exc:
            found, why = None, str(exc)
        if found is None:
            for row in rows:
                self._set(_Done(row, "error", message=tagged(
                    "outcome_unknown", f"outcome unknown: an interrupted push sent this row and its answer never "
                    f"arrived, and looking it up failed ({why}); not sent again (that could create it twice). Run the "
                    f"same push again, or {t.reconcile_hint}.")))
            self.in_doubt.update(row.key for row in rows)
            return []
        for row in rows:
            if row.key in found:
                self._set(_Done(row, "created", found[row.key].get("id"), FOUND))
        self.found += len(found)
        self.bar.update(len(found))
        self._flush()
        return [row for row in rows if row.key not in found]


#: the reason of a row an interrupted push had created (found by the search before anything was sent again)
FOUND = tagged("found_after_interrupt",
               "found in Apollo after an interrupted push: the earlier run sent this row and its answer never arrived; "
               "the record it created is reported, not created again")


def _validate_args(mode: str, run_dedupe: Any, labels: Any, dry_run: Any, allow_dnc: Any = False) -> list[str]:
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    # allow_dnc="no" is truthy: it would write do-not-call numbers by accident
    for name, value in (("run_dedupe", run_dedupe), ("dry_run", dry_run), ("allow_dnc", allow_dnc)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    if labels is None:
        return []
    if isinstance(labels, str):
        labels = [labels]
    out = []
    for label in labels:
        text, _ = nz.clean_text(label)
        if not text:
            raise InputError(f"labels must be non-empty strings, got {label!r}")
        out.append(text)
    return list(dict.fromkeys(out))


def push(
    frame: pd.DataFrame,
    target: Target,
    mode: str = "upsert",
    columns: Columns = None,
    run_dedupe: bool = True,
    labels: Sequence[str] | str | None = None,
    dry_run: bool = False,
    progress: bool = True,
    client: ApolloClient | None = None,
    default_region: str | None = "US",
    seen: dict[str, tuple[Any, str | None]] | None = None,
    stop: StopSignal | None = None,
    journal: PushJournal | None = None,
    make_bar: Callable[..., Any] | None = None,
    suppress: Any = None,
    allow_dnc: bool = False,
) -> pd.DataFrame:
    """Push ``frame`` to Apollo as ``target`` records; see the module docstring for every rule.

    ``seen`` carries keys across calls (a streaming file run's chunks): key ->
    (row label, Apollo id) of the row that pushed it. Rows repeating one end
    ``duplicate``; this call's first occurrences are added to it. ``stop``: a
    stop signal shared with those calls, so that after a rate-limit stop or a
    refused key no chunk sends anything more. ``journal``: the run's record of what it pushed, shared by those
    calls (:mod:`apollo_frames.ops.journal`); without it the call keeps its own. ``make_bar``: builds the
    progress bar each answered request moves (a file run passes its own, over the file).
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{target.operation} needs a pandas DataFrame, got {type(frame).__name__}")
    labels = _validate_args(mode, run_dedupe, labels, dry_run, allow_dnc)
    RunOptions(progress=progress, suppress=suppress)  # the run's options, checked as every call checks them
    started = time.monotonic()
    mapping, custom_columns = _push_columns(frame, target, mode, columns)
    not_pushed = _unwritable(target, mode, mapping, columns)
    prepared, reasons = prepare_rows(frame, target, mode, mapping, custom_columns, default_region)
    suppressed = _set_aside(prepared, reasons, client, suppress)
    held = 0 if allow_dnc else _hold_dnc(frame, target, prepared, default_region)
    keys = _dedupe(prepared, seen)
    summary = PushSummary(
        operation=target.operation,
        mode=mode,
        dry_run=dry_run,
        rows=len(frame),
        run_id=uuid.uuid4().hex[:12],
        not_pushed=not_pushed,
        do_not_call=held,
    )
    report = _Report.of(reasons)
    for i in suppressed:
        report.status[i] = SUPPRESSED
    fatal = None
    if dry_run:
        _plan(keys.unique, target, mode, labels, run_dedupe, report, summary)
    else:
        fatal = _send(
            keys.unique,
            target,
            mode,
            report,
            summary,
            client=client,
            run_dedupe=run_dedupe,
            labels=labels,
            progress=progress,
            stop=stop,
            journal=journal,
            make_bar=make_bar,
        )
    report.mark_duplicates(keys, list(frame.index), "id" if mode == "update" else target.key, dry_run)
    if seen is not None:
        seen.update((row.key, (frame.index[row.position], report.ids[row.position])) for row in keys.unique)
    report.count(summary)
    summary.elapsed_s = round(time.monotonic() - started, 3)
    result = _assemble(frame, report.status, report.ids, report.errors, report.payloads if dry_run else None)
    result.attrs["apollo"] = summary.to_dict()
    if fatal is not None:
        fatal.partial_result = result
        raise fatal
    if progress:
        announce(summary)
    return result


def _push_columns(
    frame: pd.DataFrame, target: Target, mode: str, columns: Columns
) -> tuple[dict[str, tuple[object, ...]], dict[str, tuple[object, ...]]]:
    """(field -> column, custom field id -> column); refuses a frame without the key column, warns of unpushed ones."""
    found = push_columns(list(frame.columns), target, columns)
    foreign = foreign_id_columns(frame, target, found, mode)
    mapping, custom_columns, unmapped = _split(found.without(foreign))
    unmapped = [label for label in unmapped if label not in foreign]
    key_field = "id" if mode == "update" else target.key
    if key_field not in mapping:
        where = "an 'id' (or 'apollo_id') column" if key_field == "id" else f"a {target.key!r} column"
        why = "".join(f" {label!r} was not used: {reason}." for label, reason in foreign.items())
        raise ColumnMappingError(
            f"{target.operation}(mode={mode!r}) needs {where}; none of {list(frame.columns)[:20]} was recognised."
            f"{why} Name it explicitly: columns={{'your column': {key_field!r}}}"
        )
    for choice in found.choices:  # the same words for every chunk of a file: told once
        if choice.column in foreign:
            warn(f"{target.operation}: column {choice.column!r} is not pushed: its values are not Apollo ids (24 hex "
                 f"characters): {_foreign_advice(choice.column, choice.field)}")
    if unmapped:
        shown = ", ".join(map(repr, unmapped[:15])) + (f" and {len(unmapped) - 15} more" if len(unmapped) > 15 else "")
        warn(
            f"{target.operation}: {len(unmapped)} column(s) are not pushed (no Apollo {target.singular} field by that "
            f"name): {shown}. Map one with columns={{'column': 'field'}} or 'custom.<field_id>'.",
        )
    return mapping, custom_columns


def _sent_in(field: Field, mode: str) -> bool:
    """Whether ``mode`` sends the field anywhere (labels go to bulk_create as ``append_label_names``; a full name
    is sent as the first and last name it fills)."""
    if field.kind == "full_name":
        return True
    on_create = bool(field.create_as) or field.kind == "labels"
    on_update = bool(field.update_as)
    return {"insert": on_create, "update": on_update}.get(mode, on_create or on_update)


def _unwritable(
    target: Target, mode: str, mapping: dict[str, tuple[object, ...]], columns: Columns
) -> dict[str, list[str]]:
    """Take out of ``mapping`` the fields ``mode`` sends nowhere (Apollo would ignore them silently): a column the
    caller mapped to one is refused; one recognised by its name is warned about. Returns {field: [column, ...]}."""
    unsent = {
        name: cols
        for name, cols in mapping.items()
        if name != "id" and (field := target.field(name)) is not None and not _sent_in(field, mode)
    }
    asked = sorted({f for f in (columns or {}).values() if f in unsent})
    if asked:
        raise ColumnMappingError(
            f"{target.operation}(mode={mode!r}): Apollo's {target.singular} endpoints do not take {asked} (they would "
            f"ignore it and answer success); nothing would be written. Leave the column out: columns={{'col': None}}."
        )
    for name in unsent:
        del mapping[name]
    if unsent:
        warn(
            f"{target.operation}: not pushed, as Apollo's {target.singular} endpoints do not take them (they would be "
            f"ignored silently): "
            + ", ".join(f"{name} (from {', '.join(map(repr, cols))})" for name, cols in unsent.items())
            + ". Listed in attrs['apollo']['not_pushed']."
        )
    return {name: [str(c) for c in cols] for name, cols in unsent.items()}


@dataclasses.dataclass
class _Keys:
    """The rows to push (first occurrences), and the positions that repeat a key of this frame or an earlier one."""

    unique: list[Row]
    #: position -> position of the first row with its key in this frame
    duplicate_of: dict[int, int]
    #: position -> (row label, Apollo id) of the row of an earlier call that had its key
    earlier: dict[int, tuple[Any, str | None]]


def _set_aside(prepared: list[Row | None], reasons: list[str | None], client: Any, suppress: Any) -> list[int]:
    """Rows naming a suppressed identifier (the folder's list, and ``suppress``) are never sent: their positions."""
    with client_scope(client, need_key=False) as api:
        suppressor = Suppressor.for_run(api.settings.cache_dir, suppress, api.clock)
    if suppressor is None:
        return []
    out = []
    for i, row in enumerate(prepared):
        reason = None if row is None else suppressor.row({**row.values, "id": row.record_id}, PUSH_REASON)
        if reason is not None:
            prepared[i], reasons[i] = None, reason
            out.append(i)
    return out


def _hold_dnc(frame: pd.DataFrame, target: Target, prepared: list[Row | None], default_region: str | None) -> int:
    """Take out of each row the phone number its own listed numbers (``target.dnc_columns``) flag do-not-call
    (:func:`~apollo_frames.ops.phones.do_not_call`; compared in E.164): never written. Returns how many."""
    column = next((c for c in target.dnc_columns if c in frame.columns), None)
    if column is None:
        return 0
    listed = frame[column].tolist()
    held = 0
    for row in prepared:
        if row is None or row.values.get("phone") is None:
            continue
        flagged = {normalize_phone(n.get("sanitized_number") or n.get("raw_number"), default_region)[0]
                   for n in listed_numbers(listed[row.position]) if isinstance(n, dict) and do_not_call(n)}
        if row.values["phone"] in flagged:
            del row.values["phone"]
            held += 1
    if held:
        warn(f"{target.operation}: {held:,} phone number(s) flagged do-not-call were left out of the records "
             "(allow_dnc=True writes them)")
    return held


def _dedupe(prepared: list[Row | None], seen: Mapping[str, tuple[Any, str | None]] | None) -> _Keys:
    first_of: dict[str, int] = {}
    keys = _Keys([], {}, {})
    for i, row in enumerate(prepared):
        if row is None:
            continue
        j = first_of.get(row.key)
        if j is None and seen is not None and row.key in seen:
            keys.earlier[i] = seen[row.key]
        elif j is None:
            first_of[row.key] = i
            keys.unique.append(row)
        else:
            keys.duplicate_of[i] = j
    return keys


@dataclasses.dataclass
class _Report:
    """The per-row answer of a push: status, Apollo id, reason, and (dry run) the payload."""

    status: list[str]
    ids: list[str | None]
    errors: list[str | None]
    payloads: list[str | None]

    @classmethod
    def of(cls, reasons: list[str | None]) -> _Report:
        """Invalid rows carry their reason; the rest is filled in as the push goes."""
        n = len(reasons)
        return cls(["invalid" if r is not None else "" for r in reasons], [None] * n, list(reasons), [None] * n)

    def mark_duplicates(self, keys: _Keys, labels: list[Any], same: str, dry_run: bool) -> None:
        firsts = [(i, (labels[j], self.ids[j])) for i, j in keys.duplicate_of.items()]
        for i, (label, record_id) in firsts + list(keys.earlier.items()):
            self.status[i] = "duplicate"
            self.ids[i] = record_id
            self.errors[i] = tagged("duplicate", f"duplicate of row {label!r} (same {same})")
            if dry_run:
                self.payloads[i] = None

    def count(self, summary: PushSummary) -> None:
        counts = pd.Series(self.status, dtype="object").value_counts()
        for name in (
            "created",
            "existing",
            "updated",
            "invalid",
            "duplicate",
            "skipped",
            "suppressed",
            "would_create",
            "would_update",
        ):
            setattr(summary, name, int(counts.get(name, 0)))
        summary.errors = int(counts.get("error", 0))


def _plan(
    unique: list[Row],
    target: Target,
    mode: str,
    labels: list[str],
    run_dedupe: bool,
    report: _Report,
    summary: PushSummary,
) -> None:
    """A dry run: each row's status it would try for and the JSON it would be sent as; the requests it would take."""
    would = "would_update" if mode == "update" else "would_create"
    for row in unique:
        report.status[row.position] = would
        body: dict[str, Any]
        if mode == "update":
            report.ids[row.position] = row.record_id
            body = _update_plan(row, target, labels)
        else:
            body = {"path": target.bulk_path, "record": row.create_body(target)}
            label_set = row.label_set(labels)
            if label_set:
                body["append_label_names"] = list(label_set)
            if run_dedupe:
                body["run_dedupe"] = True
        report.payloads[row.position] = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)
    if mode == "update":
        summary.planned_requests = _update_requests(unique, target, labels)
    else:
        summary.planned_requests = len(plan_batches(unique, labels))
    if mode == "upsert":  # if every record already existed (found by its key, so the key is not sent again)
        found = [dataclasses.replace(row, record_id="", matched_on_key=True) for row in unique]
        summary.planned_requests_max = summary.planned_requests + _update_requests(found, target, labels)
    else:
        summary.planned_requests_max = summary.planned_requests


def _update_plan(row: Row, target: Target, labels: Sequence[str]) -> dict[str, Any]:
    """What updating one row sends: its item of a bulk_update, or a PATCH of its own."""
    item = row.bulk_update_item(target, labels)
    if item is not None:
        return {"path": target.bulk_update_path, "record": item}
    return {
        "method": target.update_methods[0],
        "path": f"{target.plural}/{row.record_id}",
        "body": row.update_body(target, labels),
    }


def _update_requests(rows: Sequence[Row], target: Target, labels: Sequence[str]) -> int:
    """Requests the updates of ``rows`` take: a bulk_update per 100 it can carry, a PATCH for each other."""
    bulk = sum(1 for row in rows if row.bulk_update_item(target, labels) is not None)
    return math.ceil(bulk / BULK_LIMIT) + len(rows) - bulk


def _send(
    unique: list[Row],
    target: Target,
    mode: str,
    report: _Report,
    summary: PushSummary,
    *,
    client,
    run_dedupe: bool,
    labels: list[str],
    progress: bool,
    stop: StopSignal | None,
    journal: PushJournal | None = None,
    make_bar: Callable[..., Any] | None = None,
) -> ApolloError | None:
    """Push the rows for real; the fatal error that stopped it, if one did (raised once the report is built).

    ``journal``: what this run settled is kept there, and rows an interrupted earlier run settled are not sent
    again (:mod:`apollo_frames.ops.journal`); without one, the call keeps its own (closed when nothing is left).
    Ctrl-C raises :class:`PushInterrupted` once the answers received are recorded.
    """
    with client_scope(client) as api:
        own = journal is None
        if journal is None:
            run = {"target": target.plural, "mode": mode, "run_dedupe": run_dedupe, "labels": labels,
                   "rows": [[row.key, row.values, row.custom, row.record_id] for row in unique]}
            journal = PushJournal(api.cache, target.plural, fingerprint(run))
        unique, resume, doubt = _resume(unique, mode, journal, report, summary)
        before = api.stats.requests
        pusher = _Pusher(target, mode, unique, client=api, run_dedupe=run_dedupe, labels=labels, progress=progress,
                         stop=stop, journal=journal, resume=resume, doubt=doubt, make_bar=make_bar or progress_bar)
        try:
            pusher.run()
        except KeyboardInterrupt:
            raise PushInterrupted(summary.resumed + pusher.pushed(), len(unique) - pusher.pushed()) from None
        finally:
            summary.api_calls = api.stats.requests - before
        summary.unknown = len(pusher.in_doubt)
        if own and pusher.stop.fatal is None and "skipped" not in pusher.status.values() and not summary.unknown:
            journal.close()
    summary.sent = len(unique)
    summary.found = pusher.found
    summary.bulk_calls = pusher.bulk_calls
    summary.update_calls = pusher.update_calls
    summary.bulk_update_calls = pusher.bulk_update_calls
    for row in unique:
        report.status[row.position] = pusher.status[row.position]
        report.ids[row.position] = pusher.ids.get(row.position) or row.record_id
        report.errors[row.position] = pusher.messages.get(row.position)
    if pusher.stop.stopped and pusher.stop.fatal is None:
        warn(
            f"{target.operation}: stopped early ({pusher.stop_text()}); the rows not sent are 'skipped'. "
            f"Run again later: with run_dedupe=True the rows already created come back as existing.",
        )
    return pusher.stop.fatal


def _resume(
    unique: list[Row], mode: str, journal: PushJournal, report: _Report, summary: PushSummary
) -> tuple[list[Row], list[Row], dict[str, float]]:
    """(rows to push, upsert rows to update only, key -> when it was sent for the rows an interrupted run sent
    without an answer): rows an interrupted earlier run settled get its outcome."""
    earlier = journal.earlier(row.key for row in unique)
    if not earlier:
        return unique, [], {}
    rest: list[Row] = []
    resume: list[Row] = []
    doubt: dict[str, float] = {}
    for row in unique:
        entry = earlier.get(row.key)
        if entry is None or entry["status"] == SENT:
            rest.append(row)
            if entry is not None:
                at = entry.get("at")
                doubt[row.key] = float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else 0.0
        elif entry.get("update") and mode == "upsert":
            row.record_id, row.matched_on_key = entry.get("id"), bool(entry.get("on_key"))
            rest.append(row)
            resume.append(row)
        else:
            report.status[row.position], report.ids[row.position] = entry["status"], entry.get("id")
            summary.resumed += 1
    return rest, resume, doubt


def _assemble(frame: pd.DataFrame, status, ids, errors, payloads) -> pd.DataFrame:
    """Input columns (minus any named like ours), then apollo_status, apollo_id, apollo_error, apollo_error_code[,
    apollo_payload]."""
    codes = codes_of(errors)
    head = {"apollo_status": status, "apollo_id": ids, "apollo_error": errors, ERROR_CODE_COLUMN: codes}
    if payloads is not None:
        head["apollo_payload"] = payloads
    return assemble_frame(frame, new_columns(head), replaces=OUTPUT_COLUMNS)


def push_contacts(
    frame: pd.DataFrame,
    *,
    mode: str = "upsert",
    columns: Columns = None,
    run_dedupe: bool = True,
    labels: Sequence[str] | str | None = None,
    dry_run: bool = False,
    progress: bool = True,
    client: ApolloClient | None = None,
    default_region: str | None = "US",
    suppress: Any = None,
    allow_dnc: bool = False,
) -> pd.DataFrame:
    """Push each row to Apollo as a contact (insert, update or upsert); one status per row.

    ``mode="insert"``: contacts/bulk_create, 100 a call, ``run_dedupe`` as
    given (those Apollo already has end ``existing``, unmodified).
    ``"update"``: contacts/bulk_update, 100 a call (PATCH contacts/{id} per
    row only as a fallback), the id from an ``id`` / ``apollo_id`` column.
    ``"upsert"``: bulk_create, then bulk_update of the existing ones
    (``updated``). Every row needs an email (its dedupe key), except in
    update mode. Returns the input's columns and index plus ``apollo_status``
    (created, existing, updated, invalid, duplicate, error, skipped),
    ``apollo_id`` and ``apollo_error``; ``attrs["apollo"]`` has the counts and
    ``api_calls``. ``dry_run=True`` sends nothing and returns the plan.

    A contact written by an attempt whose answer was lost, and returned as
    existing by the retry, is reported ``created`` (its ``created_at`` is
    after we first sent it): see :mod:`apollo_frames.ops.push` for this and the
    other rules (columns, labels, phones, retries, stops).

    ``frame``: the contacts, one a row; ``columns``: ``{column: field}`` overrides (``None`` leaves a column out);
    ``labels``: label names added to every record; ``progress``: a bar; ``client``: the client to use (default: the
    session's); ``default_region``: the region phone numbers without a country code are read in; ``suppress``:
    identifiers never pushed; ``allow_dnc``: by default a phone number the row's ``person.phone_numbers`` (an
    ``enrich_people`` result's) flags do-not-call is left out of its contact (counted in ``do_not_call``); True
    writes it.

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> crm = pd.DataFrame({"Email": ["ann@acme.example", "ANN@acme.example", ""], "First Name": ["Ann", "Ann", "Bo"]})
    >>> report = af.push_contacts(crm, dry_run=True, progress=False)
    >>> report["apollo_status"].tolist(), report["apollo_error_code"].tolist()
    (['would_create', 'duplicate', 'invalid'], [<NA>, 'duplicate', 'no_key'])
    """
    return push(frame, CONTACTS, mode, columns, run_dedupe, labels, dry_run, progress, client, default_region,
                suppress=suppress, allow_dnc=allow_dnc)


def push_accounts(
    frame: pd.DataFrame,
    *,
    mode: str = "upsert",
    columns: Columns = None,
    run_dedupe: bool = True,
    labels: Sequence[str] | str | None = None,
    dry_run: bool = False,
    progress: bool = True,
    client: ApolloClient | None = None,
    default_region: str | None = "US",
    suppress: Any = None,
) -> pd.DataFrame:
    """Push each row to Apollo as an account (insert, update or upsert); one status per row.

    Like :func:`push_contacts`, keyed on the domain (normalised as in
    enrichment). Updates use accounts/bulk_update, falling back to PATCH
    accounts/{id} (then the legacy PUT where PATCH is answered 404/405). Apollo requires a master API key to
    write accounts; a scoped key stops the run with
    :class:`~apollo_frames.core.errors.PermissionDeniedError` saying so.

    ``frame``: the accounts, one a row; ``mode``, ``columns``, ``run_dedupe``, ``labels``, ``dry_run``,
    ``progress``, ``client``, ``default_region`` and ``suppress`` as in :func:`push_contacts`.

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> accounts = pd.DataFrame({"Company": ["Acme", "Beta"], "Website": ["acme.example", ""]})
    >>> report = af.push_accounts(accounts, dry_run=True, progress=False)
    >>> report["apollo_status"].tolist(), report["apollo_error_code"].tolist()
    (['would_create', 'invalid'], [<NA>, 'no_key'])
    """
    return push(frame, ACCOUNTS, mode, columns, run_dedupe, labels, dry_run, progress, client, default_region,
                suppress=suppress)


def _report_schema(options: Mapping[str, Any]) -> pa.Schema:
    """The report's columns after the input's (``apollo_payload`` in a dry run only)."""
    return text_schema(OUTPUT_COLUMNS if options.get("dry_run") is True else OUTPUT_COLUMNS[:4])


def _register(function: Callable[..., pd.DataFrame], target: Target, help_text: str,
              more: tuple[str, ...] = ()) -> Spec:
    return register(
        Spec(
            name=function.__name__,
            kind="push",
            function=function,
            options=("mode", "columns", "run_dedupe", "labels", "dry_run", "default_region", "suppress", *more),
            schema=_report_schema,
            run=functools.partial(push, target=target),
            target=target.plural,
            replaces=OUTPUT_COLUMNS,
            commands=(Command(function.__name__.replace("_", "-"), help_text),),
        )
    )


CONTACTS_SPEC = _register(
    push_contacts, CONTACTS, "create/update Apollo contacts from a table (contacts/bulk_create, PATCH contacts/{id})",
    ("allow_dnc",),
)
ACCOUNTS_SPEC = _register(
    push_accounts, ACCOUNTS, "create/update Apollo accounts from a table, keyed on domain (needs a master key)"
)
