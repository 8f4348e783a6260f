"""An offline Apollo.io API emulator ("sandbox"): fictional data, real HTTP semantics.

Pure standard library. Use it in-process as a WSGI app or over loopback HTTP::

    from apollo_frames.sandbox import Sandbox, SandboxConfig, DEFAULT_API_KEY
    sb = Sandbox(SandboxConfig(n_orgs=300))
    httpx.Client(transport=httpx.WSGITransport(app=sb), base_url="http://sandbox.invalid/api/v1")
    with sb.serve() as base_url:          # "http://127.0.0.1:<port>/api/v1"
        ...
    sb.credits_consumed, sb.requests, sb.count(path="people/bulk_match", status=200)
    sb.inject("503", "lost_write", path="contacts/bulk_create")

It follows ``docs/API_NOTES.md`` (endpoints, bodies, errors, headers, credits,
and the "Taken" column of its divergences table, §13). Where the API leaves a
choice open, the sandbox does the following.

World
  * ``build_world(seed, n_orgs, people_per_org)``: companies on ``.example``
    domains (``northwind-analytics.example``), each with 1 .. 2*mean-1 people
    (uniform, so the mean is ``people_per_org``); the first is the CEO.
    About 12 % of people have no e-mail (``email`` null, ``email_status``
    "unavailable"), ~30 % have a mobile phone, ~25 % a personal e-mail, ~6 %
    an accented first name (José, Zoë, Łukasz...), ~5 % an accented last name.
    E-mails are ``first.last@domain`` with accents folded to ASCII (a digit is
    appended on a clash inside one company). Ids are 24-hex, Apollo style.
  * ``person["organization"]`` is the very same dict as the entry in
    ``world.orgs`` (no ``account`` key). Enrichment responses never carry
    ``account`` / ``contact`` sub-objects, even for saved records.
  * Mobile phones live only in ``world.mobile_phones`` (never inline).

Routing and auth
  * ``/api/v1/<path>`` and ``/v1/<path>`` are identical; trailing slashes are
    ignored. An unknown path, or a known path with a method it does not take,
    is answered 404 ``{"error": "No route matches ...", "error_code": "NOT_FOUND"}``
    before any key check (and is not rate-limited).
  * Order of checks: route -> ``api_key`` in query string or body (422) ->
    ``X-Api-Key`` (401) -> key scope (403) -> scripted/random fault ->
    rate limits (429) -> body/validation (400/422) -> endpoint.
  * ``auth/health`` with a bad key is a 401 like everything else; with
    ``health_logged_out=True`` it answers 200 ``{"is_logged_in": false}`` instead
    (as a third-party recording shows real Apollo doing). Any valid key may call it.
  * The scoped key (``SCOPED_API_KEY``) may call enrichment, all searches
    (incl. ``accounts/search``), every ``contacts`` endpoint, ``webhook_result``
    and ``auth/health``; ``accounts`` create/update/bulk_create/bulk_update,
    ``accounts/{id}`` GET and both ``usage_stats`` endpoints give 403. ``accounts``
    create/update/bulk_create/bulk_update and ``usage_stats/api_usage_stats``
    are master-only for every non-master key; ``usage_stats/credit_usage_stats``
    is open to a key that lists it (``with_api_key(k, master=False, allowed=[...])``).
    403 and 429 name the endpoint as ``api/v1/<controller>/<action>``
    (e.g. ``api/v1/people/bulk_match``, ``api/v1/accounts/create``).
  * ``SandboxConfig.with_api_key(k)`` adds ``k`` as a further master key
    (the documented keys keep working); used by ``apollo-frames sandbox --api-key``.

Parameters
  * Query string and body are merged (body wins). ``key[]`` and ``key`` are
    the same; ``r[min]=1`` makes a nested dict; a repeated plain key becomes a
    list; a string where a list is expected is split on newlines. A form body
    (``application/x-www-form-urlencoded``) is parsed like a query string.
    A body that is not a JSON object gives 400 ``{"error": ...}`` (422
    ``UNKNOWN_ERROR`` with ``stack_trace`` on ``people/bulk_match``).
    ``details`` must be sent as JSON (no query-string form).

Enrichment
  * Person identification order: ``id``, ``email``, ``hashed_email`` (MD5 or
    SHA-256 of the lower-cased e-mail), ``linkedin_url`` (lower-case, no scheme,
    no ``www.``, no query, no trailing slash), then ``first_name``+``last_name``
    (or ``name``) with ``domain``, the e-mail's domain or ``organization_name``.
    Names compare case-, space- and accent-insensitively. First hit wins; an
    identifier that does not match falls through to the next.
  * ``people/match`` with none of the identifier keys: 400 INVALID_REQUEST
    "invalid request, missing identifiers"; identifiers that match nobody:
    200 ``{"person": null}``.
  * Credits (newest rules): 1 per matched person, +8 per mobile phone returned
    (``reveal_phone_number`` or ``run_waterfall_phone``, person with a mobile);
    0 for a miss (null or stub). Inside one ``bulk_match`` a person matched by
    several details is charged once (``unique_enriched_records`` counts
    distinct people). Waterfall vendor costs are not modelled (0).
  * ``reveal_phone_number`` or ``run_waterfall_*`` without ``webhook_url`` and
    without ``poll_only``: 422 ``{"error": "Please add a valid 'webhook_url'
    parameter ...", "error_code": "INVALID_REQUEST"}``. Phones are never in the
    enrichment response. See "Asynchronous results" below.
  * Misses: ``null`` at their position in ``matches`` (documented). Switches:
    ``omit_bulk_misses=True`` drops them from ``matches`` (shorter array,
    ``missing_records`` still counts them; a recorded shape).
    ``stub_misses=True`` answers a miss (people/match and bulk_match) with a stub
    person ``{"id": null, "name": "", "match_confidence": "none",
    "organization": ...}``: the organisation is the world's for the e-mail's
    domain (else ``domain``), a bare ``{id: null, name: null, website_url,
    primary_domain}`` for an unknown domain, null without a domain. A request
    with a waterfall flag always answers misses with stubs (the documented
    "none" marker). ``omit_bulk_misses`` wins over stubs.
  * ``match_confidence`` on matched people: with waterfall flags, or always with
    ``match_confidence_always=True``: "high" (id, e-mail, hashed e-mail,
    LinkedIn), "medium" (name + domain or e-mail domain), "low" (name +
    organisation name).
  * ``reveal_personal_emails`` adds ``personal_emails`` (a list, maybe empty)
    to matched people; it costs nothing extra. Without it the key is absent.
  * ``organizations/enrich`` takes ``domain`` (or ``website``/``website_url``);
    none of them -> 422 "Required parameter 'domain' missing"; an unparsable
    or unknown domain -> 200 ``{"organization": null}``.
  * ``organizations/bulk_enrich``: domains are normalised and de-duplicated;
    ``organizations`` lists each found org once, in request order, misses
    omitted; ``missing_records`` = unique domains that found nothing;
    ``unique_enriched_records`` = distinct organisations. 1 credit per
    organization returned.
  * ``rewrite_domains``: ``{"fb-alias.example": "<a world primary domain>"}``
    (or True: every org also answers to ``<name>-alias.example``) makes both
    enrichment endpoints answer an alias with the organisation whose
    ``primary_domain`` differs from the requested domain. An unknown target
    raises ValueError.
  * ``revenue_spelling``: "annual" (default; ``annual_revenue`` /
    ``annual_revenue_printed`` as the world builds them), "organization"
    (``organization_revenue`` / ``organization_revenue_printed`` only), "mixed"
    (``organization_revenue*`` everywhere; ``annual_revenue*`` only on full
    enrichments of about half the organisations, by id, never on
    ``person.organization``). Outside "annual", company search items also carry
    ``organization_revenue*``, and for a quarter of the organisations (by id)
    the live "unknown" form ``organization_revenue: 0`` with
    ``organization_revenue_printed: null``. The world itself is never changed.
  * ``locked_emails`` (share of people, by id; default 0): their matched answer
    carries the placeholder ``email_not_unlocked@domain.com`` (``email_status``
    unchanged); the legacy ``mixed_people/search`` always does.
  * ``do_not_call`` (share of people, by id; default 0): their mobile number's ``dnc_status_cd`` is
    ``national_dnc`` (a tenth of them ``state_dnc_unknown``, a code no document lists); the others read
    ``not_on_dnc``, ``not_found`` or null, as recordings show.
  * ``fractional_credits`` (default None): a person answered without an e-mail
    (none, or a locked one) costs that fraction instead of 1 credit, and
    ``credits_consumed`` reports the fractional sum.
  * 2025-2026 fields on every organisation (from its id, so the rest of the
    world is unchanged): ``organization_headcount_{six,twelve,twenty_four}_
    month_growth``, ``market_cap`` / ``publicly_traded_*`` for some large ones,
    ``sic_codes``, ``naics_codes``, intent fields; on people
    ``email_domain_catchall``, ``contact_id``, ``account_id``.

Search
  * ``per_page`` defaults to 25, clamped to 1..100; ``page`` < 1 counts as 1;
    ``page`` > 500 returns an empty list (totals still reported, no credit).
  * Results are in world order (orgs as in ``world.orgs``, people as in
    ``world.people``). Teaser ``id`` == the person id ``people/match`` takes.
  * Filters: titles are case-insensitive substrings; ``include_similar_titles``
    defaults to true and then also matches titles holding every word of the
    query in any order. Locations are case/accent-insensitive substrings of
    "city, state, country". Employee ranges "min,max" (either side may be
    empty; ``min-max`` also accepted), inclusive. ``q_keywords``: every word
    must appear in name/title/headline/org name/org keywords.
    ``q_organization_keyword_tags`` match keywords or industry.
    Unknown filters are ignored.
  * ``mixed_people/api_search`` is free. ``mixed_people/search`` (legacy) and
    ``mixed_companies/search`` cost 1 credit per page with at least one row
    (account or organization).
  * ``mixed_companies/search`` (``search_saved_accounts=True``, the documented
    shape): a company saved in the team's CRM (an account in ``sb.store`` whose
    ``organization_id`` is the org's id, or whose ``domain`` is its primary
    domain; the oldest such account) is listed in ``accounts`` - the account
    object (``id`` = account id, ``organization_id``, ``domain``, ``name``,
    stage, owner, labels...) over the org's light fields - and the others in
    ``organizations``. Both come from one list in world order, so a page can
    hold both; ``pagination.total_entries`` counts both. ``False``: ``accounts``
    is always ``[]`` (the sandbox before this switch). An account item has
    ``primary_domain: null`` and its domain in ``domain`` (Apollo's sample).

Contacts and accounts (one team; ``sb.store``)
  * ``POST contacts`` with ``run_dedupe`` (conflict #7): a match (e-mail,
    case-insensitive; else a CRM id; else first+last+organization_name when no
    e-mail is given) gets the submitted fields applied and is returned, with
    ``dedupe_result {found_existing, match_reason, existing_contact_id}``
    (``found_existing: false`` and a new contact when nothing matches).
    Without ``run_dedupe`` there is no ``dedupe_result`` and no dedupe.
  * ``contacts/bulk_create``: ``run_dedupe`` uses the same matching; matches go
    to ``existing_contacts`` unchanged; the store is consulted as the batch is
    written, so a repeat inside one batch is reported as existing. A missing or
    non-array ``contacts`` -> 422; an empty array -> 200 with two empty lists.
  * ``accounts/bulk_create``: CRM ids (salesforce_id, hubspot_id) always match;
    ``run_dedupe`` adds domain (normalised), organization_id and name
    (case-insensitive). ``POST accounts`` never dedupes.
  * PATCH and PUT are the same; ``label_names`` replaces the set; unknown id ->
    404 ``{"error": "Contact <id> not found", "error_code": "NOT_FOUND"}``
    (``Account`` for accounts). Invalid e-mails are stored as null.
  * ``contacts/bulk_update``: ``contact_attributes[]`` (each with ``id`` and any of
    owner_id, email, organization_name, title, first_name, last_name,
    account_id, present_raw_address, linkedin_url, typed_custom_fields) or
    ``contact_ids[]`` + those fields shared. Neither (or an empty array) -> 422
    "Please provide either contact_ids or contact_attributes"; more than 1000
    -> 422 "Please limit your array to fewer than 1000."; an item without
    ``id`` or an unknown id -> 422 ``{"error": "Validation failed",
    "error_details": {<id or "contact_attributes[i]">: [reason]}}`` and nothing
    is written (all or nothing). Synchronous answer ``{"contacts": [...]}``
    (id, names, email, title, organization_name, owner_id, account_id,
    present_raw_address, linkedin_url, updated_at). More than 100, or
    ``async: true``: ``{"entity_progress_job": {id, job_type:
    "contact_bulk_update", status: "pending", entity_ids, created_at,
    updated_at}}``; the sandbox applies the writes at once (``sb.store.jobs``
    keeps the job; there is no endpoint to read it).
  * ``accounts/bulk_update`` (master key): ``account_attributes[]`` (``id`` +
    name, owner_id, account_stage_id, typed_custom_fields) or ``account_ids[]``
    + shared name/owner_id/account_stage_id. ``async`` only with
    ``account_ids`` (else 422 "Async processing is not permitted."); then an
    ``entity_progress_job`` (job_type "account_bulk_update"); never async by
    size. Same 1000 limit and validation as contacts; answer
    ``{"accounts": [{id, name, domain, owner_id, account_stage_id,
    typed_custom_fields, updated_at}]}``.
  * Fields an endpoint does not take (``industry`` on any account endpoint,
    ``domain`` in ``account_attributes``, a shared field sent with
    ``*_attributes``...) are ignored silently, as Apollo does: not stored, not
    echoed, answer 200. Each is appended to ``sb.ignored_fields`` as
    ``{"endpoint", "field", "id"}`` (account create/update/bulk_create/
    bulk_update, contact create/update/bulk_create/bulk_update; only when the
    write succeeded).
  * ``contacts/search`` / ``accounts/search``: default per_page 25, newest
    first only when ``sort_by_field`` is given (else insertion order); a
    ``sort_by_field`` outside Apollo's list -> 422 "Invalid sort criteria".

Rate limits
  * Fixed windows per (API key, endpoint) - the endpoint is ``controller/action``,
    so ``/v1`` and ``/api/v1`` and PATCH/PUT share counters. A window opens at
    the first counted request after the previous one expired and lasts its
    length (INCR + EXPIRE). Lengths come from ``config.windows``.
  * Limits: ``config.limits`` may name a route path, an endpoint, a
    controller or a class (``enrichment``, ``search``, ``other``), looked up in
    that order; else the plan preset: ``plan="paid"`` (default) enrichment
    1000/min, no hourly/daily limit; search and other 200/min, 2000/h,
    6000/day. ``SandboxConfig.free_plan()`` = 50/min, 200/h, 600/day for all.
    No bulk-specific rule (conflict #1): set one via ``limits``.
  * Counted: every request that passes auth, scope and faults, including 4xx
    validation answers; they all carry the headers
    (``x-rate-limit-minute``... ``x-24-hour-requests-left``, plus the
    ``daily`` aliases if configured); a window without a limit has no headers.
    Not counted, no headers: 401, 403, 404 route, 429, injected/random faults
    (except ``lost_write``, which is counted but answers an empty 502).
  * Over a limit -> 429 with Apollo's message naming the exhausted window and
    ``error_details: {code: "USAGE.RATE_LIMIT.API_RATE_LIMIT_EXCEEDED",
    message}`` (since 2026-09); if several are exhausted, the one that resets last. ``Retry-After`` = whole
    seconds until that window resets (at least 1), or an HTTP date.
  * ``usage_stats/api_usage_stats`` reports the caller's counters for every
    endpoint; an unlimited window has ``limit`` and ``left_over`` null. Keys:
    ``usage_stats_keys="array"`` (default, documented: ``'["api/v1/people",
    "match"]'``), "path" (``api/v1/people/match``, seen live) or "mixed"
    (alternating).

Asynchronous results (``poll_only``, ``webhook_result``)
  * ``reveal_phone_number`` or ``run_waterfall_*`` with ``webhook_url`` or
    ``poll_only=true`` opens a job: the enrichment answer carries
    ``request_id`` (a signed 64-bit integer from a seeded generator, negative
    about half the time). Without any of those flags ``poll_only`` does
    nothing (no ``request_id``).
  * ``GET webhook_result/{request_id}`` (0 credits; master key or a key listing
    ``webhook_result``): before ``webhook_result_delay`` seconds (default 30,
    on the sandbox's clock) 404 ``{"error_code": "result_pending",
    "retry_after_seconds": <seconds left, at least 1>}``; then 200 with the
    documented envelope ``{"request_id" (text), "webhook_status", "request_type"
    ("phone" | "waterfall"), "last_dispatched_at", "failure_reason",
    "webhook_result": {"status", "total_requested_enrichments",
    "unique_enriched_records", "missing_records", "credits_consumed", "people":
    [{"id", "status" ("success" | "not_found"), "phone_numbers": [{raw_number,
    sanitized_number (E.164), type_cd: "mobile", status_cd, confidence_cd,
    dnc_status_cd, dnc_other_info, position}], "emails": [...] (with
    run_waterfall_email: the known e-mail, or for half of the people without
    one a first.last guess)}]}`` (matched people only); after
    ``webhook_result_ttl`` (30 days) more 410 ``request_id_expired``; never
    issued 404 ``request_id_unknown``; not a signed 64-bit integer 400
    ``invalid_request_id``.
  * When the +8 per mobile is charged: with ``webhook_url`` at the request (in
    its ``credits_consumed``; one ``sb.webhook_deliveries`` entry per matched
    person, with ``request_id``; nothing is sent); with ``poll_only`` alone
    when the result is produced, i.e. as soon as the clock passes its ready
    time (checked on every request and when ``sb.credits_consumed`` or the
    meter is read) - Apollo charges "if a mobile phone is returned", which is
    only known then. Those charges are in ``sb.async_charges`` and in the
    payload's ``credits_consumed``; the enrichment answer's
    ``credits_consumed`` holds only the 1 per match.

Credit meter (``usage_stats/credit_usage_stats``, POST or GET, 0 credits)
  * ``{"credit_usage_stats": {<type>: {"limit", "consumed", "left_over"}},
    "current_credit_cycle": {"start_date", "end_date"}}`` for lead_credit,
    direct_dial_credit, export_credit, conversation_credit, ai_credit,
    power_up_credit, inbound_/contact_website_visitor_credit (and any other type
    named in ``credit_limits``). ``consumed`` follows the true charges of every
    key at once (the team's meter): direct_dial_credit = the mobiles (+8 each),
    lead_credit = every other credit (person and organisation enrichment,
    search pages); nothing is charged to export_credit. ``left_over`` =
    max(0, limit - consumed). Limits: ``credit_limits`` (default
    ``shapes.DEFAULT_CREDIT_LIMITS``); cycle: ``credit_cycle`` or the calendar
    month (UTC) of the clock's time. ``sb.charge_outside(n, type)`` adds
    spending made elsewhere by the team: on the meter only, not in
    ``sb.credits_consumed``. The sandbox never refuses a request for lack of
    credits.

Faults
  * ``inject(*faults, path=None)``: scripted faults, used in order by the next
    requests whose route (``"people/bulk_match"``, ``"contacts/{id}"``) or
    endpoint (``"contacts/update"``) matches ``path`` (any request if None),
    after auth. Then random ones from ``random.Random(fault_seed)``: 429
    (``rate_429``), 500/502/503 (``error_rate``), ``lost_write``
    (``lost_write_rate``, write endpoints only).
  * "500" JSON error; "502"/"503" small HTML bodies; "429" has
    ``Retry-After: 1`` (when retry_after is on), "429-no-retry-after" none;
    "timeout" sleeps ``timeout_fault_seconds`` then 504; none of these reaches
    the endpoint (nothing written, nothing charged). "lost_write" runs the
    request for real (written, counted, credits charged on any endpoint) and
    then answers 502 with an empty body.
  * Hostile servers (``hostile.py``; "name=argument"): "retry_after=<raw>" is a
    429 whose Retry-After is the raw value ("0", "-5", "nan", or "past" for an
    HTTP date an hour ago) and reaches nothing. The others run the request for
    real (written, counted, charged) and spoil only the answer:
    "credits_consumed=<number>" reports that number ("-100", "0", "nan",
    "1e300") as ``credits_consumed``; "deep_json[=depth]" answers
    ``{"matches": [[[...]]]}`` nested 200,000 deep; "bad_gzip" sends
    ``Content-Encoding: gzip`` with garbage; "trickle[=seconds]" sends the body
    one byte at a time, sleeping 0.3 s (on the clock) before each byte - real
    trickling needs the loopback server and the system clock;
    "oversized[=bytes]" pads the JSON object to 32 MiB (streamed in 1 MiB
    chunks); "echo_key" appends the caller's API key to every record's
    ``name`` and adds ``"echo": {"x-api-key": <key>}``; "wrong_shape" puts a
    string wherever a record (person, organization, contact, account, list
    items) should be; "formulas" makes every record's ``title``
    ``=HYPERLINK(...)`` and prefixes its ``name`` with ``@``; "other_people"
    moves each bulk_match match one place on (every input answered with
    another person's record); "one_person" answers every matched input with
    the first person (bulk_enrich: organization) found. Answers lost on the way:
    "truncate" sends half the body under a Content-Length for all of it; "reset"
    sends half then an RST; "close" closes the connection before the status line
    (over loopback; in process the body just ends short or empty). "overcharge"
    charges 1 credit per record asked, found or not, while reporting the usual
    figure (a plausible under-report). Persistent versions:
    ``credits_consumed_override`` (every answer with ``credits_consumed``),
    ``retry_after_override`` (every 429, real or injected) and ``overcharge``
    (every enrichment).
  * Every answer (faults, 401, 404 ...) is in ``sb.requests``; ``n_records`` is
    the number of records sent for enrichment/bulk/write endpoints, the number
    of rows returned for searches, 0 otherwise. ``config.latency`` is slept
    (on the clock) after the request is recorded, outside every lock.

Time
  * ``Sandbox(config, clock=...)``: rate-limit windows, ``latency`` and
    ``timeout`` and ``trickle`` sleeps, ``Retry-After`` dates, request and record
    timestamps, ``webhook_result`` readiness and expiry and the credit cycle all
    read one clock (the system clock by default). With
    ``apollo_frames.core.clock.FakeClock`` nothing really waits; clients made
    by ``sb.client()`` share the sandbox's clock.
"""

from __future__ import annotations

from .app import (
    DEFAULT_API_KEY,
    PLAN_LIMITS,
    ROUTES,
    SANDBOX_BASE_URL,
    SCOPED_API_KEY,
    KeySpec,
    RequestRecord,
    Sandbox,
    SandboxConfig,
    client_for,
)
from .world import World, build_world

__all__ = [
    "DEFAULT_API_KEY",
    "PLAN_LIMITS",
    "ROUTES",
    "SCOPED_API_KEY",
    "KeySpec",
    "RequestRecord",
    "Sandbox",
    "SandboxConfig",
    "World",
    "build_world",
    "client_for",
    "SANDBOX_BASE_URL",
]
