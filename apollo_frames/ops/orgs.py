"""Organization enrichment through POST organizations/bulk_enrich (10 domains a call).

bulk_enrich leaves misses out of its answer, so results are joined back to the
requested domains on ``primary_domain`` (or the website's domain, or an alias
field); an answer under a domain Apollo rewrote is never dropped (see ``_parse``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from apollo_frames.client.http import ApolloClient, client_scope, unusable_answer
from apollo_frames.client.ledger import Ledger
from apollo_frames.core import normalize as nz
from apollo_frames.core.columns import ORGS, Columns, resolve
from apollo_frames.core.reasons import reason
from apollo_frames.core.schema import ORG_SCHEMA, flatten_orgs
from apollo_frames.engine.assemble import STATUS_COLUMNS, text_schema
from apollo_frames.engine.options import RunOptions
from apollo_frames.engine.runner import Operation, Parsed, Prepared, Unattributed, run_operation
from apollo_frames.ops.registry import Command, Spec, register

ENDPOINT = "organizations/bulk_enrich"
BATCH_SIZE = 10


def prepare_orgs(frame: pd.DataFrame, columns: Columns = None) -> Prepared:
    """Map the frame's domain column(s) and normalise; a row without a usable domain is invalid.

    Several domain-like columns (HubSpot's ``Company Domain Name`` and ``Website URL``)
    are coalesced per row: the first non-empty wins. The mapping is kept as ``prepared.columns``.
    """
    mapping = resolve(frame.columns, ORGS, columns, sample=frame)
    prepared = Prepared([], [], [], columns=mapping)
    for raw in mapping.values(frame)["domain"]:
        domain, why = nz.normalize_domain(raw)
        if domain is None:
            prepared.records.append(None)
            prepared.identities.append(None)
            prepared.reasons.append(reason("no_domain", why=why or "the domain is blank"))
        else:
            record = {"domain": domain}
            prepared.records.append(record)
            prepared.identities.append(record)
            prepared.reasons.append(None)
    return prepared


def _payload(records: list[dict], options: dict) -> dict:
    return {"domains": [r["domain"] for r in records]}


#: Fields an organisation may list its other domains in: a requested domain found there is this organisation's.
ALIAS_FIELDS = ("domain_aliases", "alias_domains", "secondary_domains", "domains")


def _org_domains(org: dict) -> list[str]:
    """The domains an organisation answers to: primary, website, ``domain``, then any alias field's."""
    raw: list[Any] = [org.get(field) for field in ("primary_domain", "website_url", "domain")]
    for field in ALIAS_FIELDS:
        listed = org.get(field)
        raw += listed if isinstance(listed, list) else [listed] if isinstance(listed, str) else []
    found = [nz.normalize_domain(value)[0] for value in raw]
    return list(dict.fromkeys(d for d in found if d))


def _parse(records: list[dict], data: Any) -> Parsed:
    """Each requested domain's organization (None for a miss), and the credits: one per organization returned.

    ``organizations`` must be a list of objects; any other shape is an error
    for the batch (nothing cached), never a no-match. bulk_enrich leaves misses out and may answer a
    domain with an organisation whose primary domain differs (``fb.com`` -> ``facebook.com``): see
    :func:`_attribute_rest`.
    """
    orgs = data.get("organizations") if isinstance(data, dict) else None
    if not isinstance(orgs, list):
        raise unusable_answer(ENDPOINT, f"'organizations' is {type(orgs).__name__}, not a list of organizations")
    for i, org in enumerate(orgs):
        if not isinstance(org, dict):
            raise unusable_answer(ENDPOINT, f"organization {i} is {type(org).__name__}, not an object")
    by_domain: dict[str, dict] = {}
    for org in orgs:
        for domain in _org_domains(org):
            by_domain.setdefault(domain, org)
    results = [by_domain.get(r["domain"]) for r in records]
    # bulk_enrich reports no credits; Apollo charges one per organization returned (the runner caps it).
    return _attribute_rest(records, results, orgs, float(len(orgs)))


def _attribute_rest(records: list[dict], results: list[dict | None], orgs: list[dict], credits: float) -> Parsed:
    """Never drop a paid answer: the only organisation left for the only domain left is that domain's;
    otherwise the organisations left are kept and reported, and the domains left cannot be called misses."""
    joined = {id(o) for o in results if o is not None}
    left = [o for o in orgs if id(o) not in joined]
    missing = [i for i, r in enumerate(results) if r is None]
    if not left:
        return Parsed(results, credits)
    if len(left) == 1 and len(missing) == 1:
        results[missing[0]] = left[0]
        return Parsed(results, credits)
    requested = [records[i]["domain"] for i in missing]
    reason = (
        f"bulk_enrich answered {len(left)} organisation(s) under other domains than those asked for "
        f"({', '.join(str(o.get('primary_domain')) for o in left)}); this domain may be one of them or a miss. "
        f"They are kept (cached under their own domains, listed in attrs['apollo']['unattributed'])."
    )
    report = [Unattributed(o, {"endpoint": ENDPOINT, "id": o.get("id"), "name": o.get("name"),
                               "primary_domain": o.get("primary_domain"), "credits": 1.0, "requested": requested})
              for o in left]
    return Parsed(results, credits, {i: reason for i in missing}, report)


OPERATION = Operation(
    name="enrich_orgs",
    endpoint=ENDPOINT,
    batch_size=BATCH_SIZE,
    build_payload=_payload,
    parse=_parse,
    worst_credits=lambda options: 1.0,
    flatten=flatten_orgs,
    aliases=lambda org: [{"domain": domain} for domain in _org_domains(org)],
)


def orgs_job(frame: pd.DataFrame, columns: Columns = None) -> tuple[Prepared, Operation, dict]:
    """What enriching ``frame`` sends: the prepared rows, the operation and its options."""
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"enrich_orgs needs a pandas DataFrame, got {type(frame).__name__}")
    return prepare_orgs(frame, columns), OPERATION, {}


def enrich_orgs(
    frame: pd.DataFrame,
    *,
    columns: Columns = None,
    max_credits: float | None = None,
    refresh: bool = False,
    progress: bool = True,
    client: ApolloClient | None = None,
    ledger: Ledger | None = None,
    confirm_over: float | None = None,
    suppress: Any = None,
    max_age: Any = None,
) -> pd.DataFrame:
    """Enrich every row of ``frame`` with Apollo's organization record, by domain (``max_age``: stored answers
    older than that, a timedelta, seconds or text such as ``"90d"``, are fetched again).

    ``columns``: ``{column: field}`` overrides of the recognised columns (``None`` leaves a column out).
    ``max_credits`` caps what the call may spend (rows past it are ``skipped``); ``confirm_over`` asks first (or
    refuses, when nobody can be asked) when the worst case is above it; ``refresh=True`` fetches again even what is
    stored; ``max_age`` fetches again what was stored longer ago; ``suppress`` names identifiers never sent, stored
    or returned (values, a file, a column); ``ledger`` is where the spend is recorded (default: the client's);
    ``progress`` shows a bar and the summary line; ``client`` is the client to use (default: the session's, else one
    built from the environment). These are checked once, before anything is read or sent
    (:class:`~apollo_frames.engine.options.RunOptions`).

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> out = af.enrich_orgs(pd.DataFrame({"Website": ["https://verdant-foods.example/", "n/a"]}), progress=False)
    >>> out["apollo_status"].tolist(), out["apollo_error_code"].tolist(), out["org.name"][0]
    (['matched', 'invalid'], [<NA>, 'no_domain'], 'Verdant Foods')
    """
    run = RunOptions(max_credits=max_credits, refresh=refresh, progress=progress, confirm_over=confirm_over,
                     max_age=max_age, suppress=suppress, ledger=ledger)
    prepared, op, options = orgs_job(frame, columns)
    with client_scope(client) as api:
        return run_operation(frame, prepared, op, options, client=api, run=run)


SPEC = register(Spec(
    name="enrich_orgs",
    kind="enrich",
    function=enrich_orgs,
    job=orgs_job,
    options=("columns",),
    schema=lambda options: text_schema(STATUS_COLUMNS, ORG_SCHEMA),
    commands=(Command("enrich-orgs", "enrich a table of companies by domain (organizations/bulk_enrich)"),),
))
