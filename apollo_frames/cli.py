"""The ``apollo-frames`` command line.

Exit codes: 0 done; 1 failed (or some rows ended in error); 2 bad usage or input;
3 the API key was refused (401/403); 4 stopped by a rate limit (a spent daily window):
the output file is written, the rows not done are ``skipped``, run the same command
again after the window resets (the message says when) and it continues from the cache.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

from apollo_frames._version import __version__
from apollo_frames.core.errors import ApolloError, AuthenticationError, ConfigurationError, PermissionDeniedError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_RATE_LIMITED = 0, 1, 2, 3, 4


def _parse_map(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    mapping = {}
    for pair in pairs:
        source, sep, target = pair.rpartition("=")
        if not sep or not source.strip() or not target.strip():
            raise ValueError(f"--map takes COLUMN=FIELD, got {pair!r}")
        mapping[source.strip()] = target.strip()
    return mapping


def parquet_path(value: str, what: str) -> Path:
    """An output path, refused early unless it names a .parquet file."""
    path = Path(value)
    if path.suffix.lower() != ".parquet":
        raise ValueError(f"{what} must be a .parquet file, got {path.name}")
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a .csv or .parquet input; CSV cells are kept as text so ids and zip codes survive."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".csv", ".txt"):
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    raise ValueError(f"input must be .csv or .parquet, got {path.name}")


def _client(args, sandbox=None):
    from apollo_frames.client.http import ApolloClient

    kwargs = {"cache_dir": getattr(args, "cache_dir", None)}
    if sandbox is not None:
        return sandbox.client(**kwargs)
    return ApolloClient(**kwargs)


def _sandbox_if(args):
    if getattr(args, "sandbox", False):
        from apollo_frames.sandbox import Sandbox

        return Sandbox()
    return None


# -- commands ----------------------------------------------------------------------------------


def cmd_enrich(args) -> int:
    import warnings

    from apollo_frames.io.stream import enrich_parquet
    from apollo_frames.engine.summary import RunSummary

    output = parquet_path(args.output, "output")
    if not Path(args.input).exists():
        raise FileNotFoundError(f"input file not found: {args.input}")
    columns = _parse_map(args.map)
    with _client(args, _sandbox_if(args)) as client, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the skipped-rows message is printed below instead
        summary = enrich_parquet(
            args.input, output, args.command.replace("-", "_"), chunk_rows=args.chunk_rows, client=client,
            progress=not args.quiet, columns=columns, max_credits=args.max_credits, refresh=args.refresh,
        )
    fields = {k: summary[k] for k in RunSummary.__dataclass_fields__}
    print(f"wrote {output} | " + _summary_line(fields))
    if summary["message"]:
        print(summary["message"], file=sys.stderr)
    if summary["stopped_by_rate_limit"]:
        return EXIT_RATE_LIMITED
    return EXIT_FAILED if summary["errors"] else EXIT_OK


def _summary_line(summary: dict) -> str:
    from apollo_frames.engine.summary import RunSummary

    return RunSummary(**summary).line()


def cmd_sandbox(args) -> int:
    from apollo_frames.sandbox import Sandbox, SandboxConfig

    config = SandboxConfig(seed=args.seed, n_orgs=args.orgs, latency=args.latency)
    if args.api_key:
        config = config.with_api_key(args.api_key)
    sandbox = Sandbox(config)
    base_url = sandbox.start(host="127.0.0.1", port=args.port)
    key = args.api_key or __import__("apollo_frames.sandbox", fromlist=["DEFAULT_API_KEY"]).DEFAULT_API_KEY
    print(f"Apollo sandbox listening (offline emulator, fictional data); press Ctrl-C to stop.", flush=True)
    print(f"APOLLO_BASE_URL={base_url}", flush=True)
    print(f"APOLLO_API_KEY={key}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return EXIT_OK


#: (method, path, body) probes that cost no credits: a 400/422 answer still proves access.
DOCTOR_PROBES = (
    ("POST", "people/bulk_match", {}),
    ("POST", "organizations/bulk_enrich", {}),
    ("POST", "mixed_people/api_search", {"per_page": 1, "q_organization_domains_list": ["doctor.invalid"]}),
    ("POST", "mixed_companies/search", {"per_page": 1, "q_organization_domains_list": ["doctor.invalid"]}),
    ("POST", "contacts/search", {"per_page": 1}),
    ("POST", "accounts/search", {"per_page": 1}),
    ("POST", "usage_stats/api_usage_stats", {}),
)


def cmd_doctor(args) -> int:
    from apollo_frames.core.errors import ValidationError
    from apollo_frames.client.ratelimit import parse_rate_headers

    sandbox = _sandbox_if(args)
    with _client(args, sandbox) as client:
        s = client.settings
        print(f"base_url   {s.base_url}")
        print(f"api key    {'set (' + s.key_hint + ')' if s.api_key else 'NOT SET: export APOLLO_API_KEY'}")
        print(f"cache_dir  {s.cache_dir}")
        if not s.api_key:
            return EXIT_AUTH
        try:
            health = client.get("auth/health")
        except AuthenticationError as exc:
            print(f"auth       REFUSED: {exc}")
            return EXIT_AUTH
        except ApolloError as exc:
            print(f"auth       no answer: {exc}")
            return EXIT_FAILED
        print(f"auth       ok {health.data}")
        rows = []
        for method, path, body in DOCTOR_PROBES:
            headers = {}
            try:
                headers = client.request(method, path, json=body).headers
                verdict = "ok"
            except ValidationError as exc:
                verdict = "ok"  # an empty probe refused as malformed still proves access
                headers = exc.headers
            except PermissionDeniedError:
                verdict = "403 not allowed"
            except ApolloError as exc:
                verdict = f"error: {str(exc)[:60]}"
            limits = parse_rate_headers(headers)
            shown = " ".join(
                f"{w}={r.left}/{r.limit}" for w, r in limits.items() if r.limit is not None
            ) or "-"
            rows.append((path, verdict, shown))
        width = max(len(r[0]) for r in rows)
        print(f"\n{'endpoint'.ljust(width)}  {'access'.ljust(16)}  limits (left/limit)")
        for path, verdict, shown in rows:
            print(f"{path.ljust(width)}  {verdict.ljust(16)}  {shown}")
    return EXIT_OK


def _refuse_requests(environ, start_response):
    raise RuntimeError("apollo-frames estimate must not send requests")


def cmd_estimate(args) -> int:
    from apollo_frames.estimates import estimate
    from apollo_frames.sandbox import client_for

    frame = read_table(args.input)
    options = {"reveal_phone_number": True} if args.reveal_phone_number else {}
    if args.reveal_phone_number and args.op != "enrich-people":
        raise ValueError("--reveal-phone-number applies to --op enrich-people only")
    # With --sandbox only the sandbox's cache namespace matters: no emulator is built, and an
    # attempt to send a request would fail loudly.
    client = client_for(_refuse_requests, cache_dir=args.cache_dir) if args.sandbox else _client(args)
    with client:
        result = estimate(frame, args.op, client=client, columns=_parse_map(args.map), **options)
    print(repr(result))
    return EXIT_OK


def _usage_endpoint(key: str) -> str:
    """'["api/v1/people", "bulk_match"]' -> 'people/bulk_match' (the endpoint names the toolkit uses)."""
    import json

    try:
        parts = json.loads(key)
    except ValueError:
        return str(key)
    if not isinstance(parts, list):
        return str(key)
    path = "/".join(str(p).strip("/") for p in parts)
    return path[len("api/v1/"):] if path.startswith("api/v1/") else path


def _usage_table(rows: list[tuple[str, dict]], with_seen: bool = False) -> str:
    """One line per endpoint: limit, consumed and left for each window ('-' = none given / unlimited)."""
    def cell(value) -> str:
        return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)

    header = ["endpoint"]
    for window in ("minute", "hour", "day"):
        header += [f"{window} limit", "used", "left"]
    if with_seen:
        header += ["seen"]
    lines = [header]
    for endpoint, windows in rows:
        line = [endpoint]
        for window in ("minute", "hour", "day"):
            info = windows.get(window) or {}
            line += [cell(info.get("limit")), cell(info.get("consumed")), cell(info.get("left"))]
        if with_seen:
            line.append(windows.get("seen", ""))
        lines.append(line)
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 or (with_seen and i == len(header) - 1) else c.rjust(w)
                  for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        for r in lines
    )


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def cmd_usage(args) -> int:
    from apollo_frames.core.errors import NotFoundError
    from apollo_frames.client.ratelimit import WindowReading

    with _client(args, _sandbox_if(args)) as client:
        note = client.ledger.in_doubt_note()  # requests a killed run sent and never settled
        if note:
            print(note)
        try:
            answer = client.post("usage_stats/api_usage_stats", json={})
        except (PermissionDeniedError, NotFoundError) as exc:
            status = getattr(exc, "status_code", "")
            print(
                f"usage_stats is not available to this key ({status}); showing instead the last rate-limit "
                f"headers recorded in the ledger ({client.ledger.path}):"
            )
            seen = client.ledger.limits()
            if not seen:
                print("  none recorded yet: they are saved on every enrichment batch, so run one first.")
                return EXIT_OK
            rows = []
            for endpoint, windows in seen.items():
                row = {w: {"limit": i["limit"], "consumed": i["usage"], "left": i["left"]} for w, i in windows.items()}
                newest = max(i["seen_at"] for i in windows.values())
                sources = sorted({i["source"] for i in windows.values()})
                row["seen"] = f"{newest.strftime('%Y-%m-%d %H:%M:%S UTC')} ({'/'.join(sources)})"
                rows.append((endpoint, row))
            print(_usage_table(rows, with_seen=True))
            print("('-' limit: Apollo sent no header for that window, i.e. unlimited; counts are as of 'seen'.)")
            return EXIT_OK
        data = answer.data if isinstance(answer.data, dict) else {}
        rows = []
        for key, windows in data.items():
            if not isinstance(windows, dict):
                continue
            endpoint = _usage_endpoint(key)
            row = {}
            for window in ("minute", "hour", "day"):
                info = windows.get(window) if isinstance(windows.get(window), dict) else {}
                row[window] = {
                    "limit": _as_int(info.get("limit")),
                    "consumed": _as_int(info.get("consumed")),
                    "left": _as_int(info.get("left_over")),
                }
            rows.append((endpoint, row))
            readings = {
                w: WindowReading(limit=r["limit"], usage=r["consumed"], left=r["left"])
                for w, r in row.items()
                if r["limit"] is not None
            }
            # Remembered for estimates: the real limits of every endpoint, not only those called so far.
            client.ledger.note_limits(endpoint, readings, source="usage_stats")
        rows.sort(key=lambda r: r[0])
        print(f"Apollo usage_stats ({len(rows)} endpoints) as of {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}:")
        print(_usage_table(rows))
    return EXIT_OK


def cmd_cache(args) -> int:
    from apollo_frames.client.store_admin import cache_command

    print(cache_command(args.action, args.cache_dir, older_than=args.older_than, path=args.path))
    return EXIT_OK


def _parse_filters(pairs: list[str] | None) -> dict:
    """--filter NAME=VALUE pairs -> filters; a name repeated (``x`` or ``x[]``) accumulates a list."""
    filters: dict = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if name.endswith("[]"):
            name = name[:-2]
        if not sep or not name:
            raise ValueError(f"--filter takes NAME=VALUE, got {pair!r}")
        value = value.strip()
        if name in filters:
            before = filters[name]
            filters[name] = (before if isinstance(before, list) else [before]) + [value]
        else:
            filters[name] = value
    return filters


def cmd_search(args) -> int:
    from apollo_frames.ops import search

    output = parquet_path(args.output, "output")
    filters = _parse_filters(args.filter)
    with _client(args, _sandbox_if(args)) as client:
        if args.command == "search-people":
            result = search.search_people(
                max_results=args.max_results, client=client, progress=not args.quiet, refresh=args.refresh, **filters
            )
        else:
            result = search.search_orgs(
                max_results=args.max_results, max_credits=args.max_credits, client=client, progress=not args.quiet,
                refresh=args.refresh, **filters,
            )
    output.parent.mkdir(parents=True, exist_ok=True)
    result.to_parquet(output)
    summary = result.attrs["apollo"]
    print(f"wrote {output} | " + search.SearchSummary(**summary).line())
    return EXIT_OK


def cmd_push(args) -> int:
    from apollo_frames.io.stream import push_parquet
    from apollo_frames.ops.push import PushSummary

    report = parquet_path(args.report, "--report")
    if not Path(args.input).exists():
        raise FileNotFoundError(f"input file not found: {args.input}")
    options = dict(
        chunk_rows=args.chunk_rows, progress=not args.quiet, mode=args.mode, columns=_parse_map(args.map),
        run_dedupe=not args.no_dedupe, labels=args.label, dry_run=args.dry_run, default_region=args.default_region,
    )
    target = args.command.removeprefix("push-")
    if args.dry_run:
        summary = push_parquet(args.input, report, target, **options)  # a dry run sends nothing and needs no key
    else:
        with _client(args, _sandbox_if(args)) as client:
            summary = push_parquet(args.input, report, target, client=client, **options)
    fields = {k: summary[k] for k in PushSummary.__dataclass_fields__}
    print(f"wrote {report} | " + PushSummary(**fields).line())  # a rate-limit stop was warned about already
    if summary["stopped_by_rate_limit"]:
        return EXIT_RATE_LIMITED
    return EXIT_FAILED if summary["errors"] else EXIT_OK


def _samples_dir(explicit: str | None) -> Path:
    candidates = [Path(explicit)] if explicit else [Path("data/samples"), Path(__file__).resolve().parents[1] / "data/samples"]
    for candidate in candidates:
        if (candidate / "people.csv").exists():
            return candidate
    raise FileNotFoundError("sample data not found; pass --samples DIR (the repository's data/samples)")


def cmd_demo(args) -> int:
    from apollo_frames.ops import orgs
    from apollo_frames.ops import people
    from apollo_frames.client.http import ApolloClient
    from apollo_frames.sandbox import Sandbox

    samples = _samples_dir(args.samples)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("apollo_frames demo: the embedded Apollo sandbox stands in for Apollo (no key needed, no real credits spent).")
    sandbox = Sandbox()
    with sandbox.client(cache_dir=out / "cache") as client:
        people_in = read_table(samples / "people.csv")
        enriched = people.enrich_people(people_in, client=client, progress=not args.quiet)
        enriched.to_parquet(out / "people_enriched.parquet")
        print(f"people    -> {out / 'people_enriched.parquet'}\n  {_summary_line(enriched.attrs['apollo'])}")
        companies_in = read_table(samples / "companies.csv")
        companies = orgs.enrich_orgs(companies_in, client=client, progress=not args.quiet)
        companies.to_parquet(out / "companies_enriched.parquet")
        print(f"companies -> {out / 'companies_enriched.parquet'}\n  {_summary_line(companies.attrs['apollo'])}")
        again = people.enrich_people(people_in, client=client, progress=False)
        print(f"re-run of people, all from the cache:\n  {_summary_line(again.attrs['apollo'])}")
        counts = enriched["apollo_status"].value_counts().to_dict()
        print(f"people statuses: {counts}")
        print(f"fictional credits the sandbox counted in all: {sandbox.credits_consumed:g}")
    return EXIT_OK


# -- parser ------------------------------------------------------------------------------------


def _add_run_options(p: argparse.ArgumentParser, chunked: bool = False) -> None:
    """--cache-dir, --sandbox, --quiet (and --chunk-rows for the streaming commands)."""
    p.add_argument("--cache-dir", default=None, help="default: $APOLLO_FRAMES_CACHE_DIR or ~/.cache/apollo_frames")
    p.add_argument("--sandbox", action="store_true", help="use the embedded offline sandbox instead of Apollo")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    if chunked:
        p.add_argument("--chunk-rows", type=int, default=10_000, help="rows read, processed and written at a time")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apollo-frames", description="Enrich tables through the Apollo.io API: batched, cached, credit-aware."
    )
    parser.add_argument("--version", action="version", version=f"apollo-frames {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    for name, help_text in (
        ("enrich-people", "enrich a table of people (people/bulk_match)"),
        ("enrich-orgs", "enrich a table of companies by domain (organizations/bulk_enrich)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("input", help=".csv or .parquet")
        p.add_argument("output", help=".parquet")
        p.add_argument("--map", action="append", metavar="COLUMN=FIELD", help="map an input column to an Apollo field")
        p.add_argument("--max-credits", type=float, default=None, help="never spend more than this in the run")
        p.add_argument("--refresh", action="store_true", help="ignore cached answers (they are still updated)")
        _add_run_options(p, chunked=True)
        p.set_defaults(func=cmd_enrich)

    p = sub.add_parser("sandbox", help="serve the offline Apollo emulator on loopback until stopped")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--api-key", default=None, help="the key it accepts (default: the documented sandbox key)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--orgs", type=int, default=2000, help="companies in the fictional world")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("doctor", help="check the key, its access and its rate limits")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--sandbox", action="store_true", help="check against the embedded sandbox")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("estimate", help="what an enrichment would cost: cache hits, calls, credits, duration (sends nothing)")
    p.add_argument("input", help=".csv or .parquet")
    p.add_argument("--op", required=True, choices=["enrich-people", "enrich-orgs"], help="the operation to estimate")
    p.add_argument("--map", action="append", metavar="COLUMN=FIELD", help="map an input column to an Apollo field")
    p.add_argument("--reveal-phone-number", action="store_true", help="people: price the phone reveal (+8 credits)")
    p.add_argument("--cache-dir", default=None, help="default: $APOLLO_FRAMES_CACHE_DIR or ~/.cache/apollo_frames")
    p.add_argument("--sandbox", action="store_true", help="estimate against the embedded sandbox's cache")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("usage", help="rate limits used and left per endpoint (usage_stats; ledger if refused)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--sandbox", action="store_true", help="ask the embedded sandbox")
    p.set_defaults(func=cmd_usage)

    p = sub.add_parser("cache", help="the answer store: info, prune, verify, export/import as Parquet")
    p.add_argument("action", choices=["info", "prune", "verify", "export", "import"])
    p.add_argument("path", nargs="?", default=None, help="export/import: the .parquet file")
    p.add_argument("--older-than", default="30d", help="prune: entries stored longer ago than this (30d, 12h, 2w)")
    p.add_argument("--cache-dir", default=None, help="default: $APOLLO_FRAMES_CACHE_DIR or ~/.cache/apollo_frames")
    p.set_defaults(func=cmd_cache)

    for name, help_text in (
        ("search-people", "search people by filters (mixed_people/api_search, free; teaser records)"),
        ("search-orgs", "search organizations by filters (mixed_companies/search, 1 credit per page with results)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("output", help=".parquet")
        p.add_argument(
            "--filter", action="append", metavar="NAME=VALUE",
            help="an Apollo search filter, e.g. person_titles='VP Sales'; repeat a name for a list of values",
        )
        p.add_argument("--max-results", type=int, default=100, help="return at most this many records (default 100)")
        if name == "search-orgs":
            p.add_argument("--max-credits", type=float, default=None, help="never spend more than this in the run")
        p.add_argument("--refresh", action="store_true", help="ignore cached pages (they are still updated)")
        _add_run_options(p)
        p.set_defaults(func=cmd_search)

    for name, help_text in (
        ("push-contacts", "create/update Apollo contacts from a table (contacts/bulk_create, PATCH contacts/{id})"),
        ("push-accounts", "create/update Apollo accounts from a table, keyed on domain (needs a master key)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("input", help=".csv or .parquet")
        p.add_argument("--mode", choices=["upsert", "insert", "update"], default="upsert")
        p.add_argument("--report", required=True, help=".parquet: the input with apollo_status, apollo_id, apollo_error")
        p.add_argument("--dry-run", action="store_true", help="send nothing; report what would be sent")
        p.add_argument("--map", action="append", metavar="COLUMN=FIELD", help="map an input column to an Apollo field")
        p.add_argument("--label", action="append", metavar="NAME", help="label added to the records created (repeatable)")
        p.add_argument("--no-dedupe", action="store_true", help="bulk_create without run_dedupe (unknown outcomes are not retried)")
        p.add_argument("--default-region", default="US", help="region for phone numbers without a +country code")
        _add_run_options(p, chunked=True)
        p.set_defaults(func=cmd_push)

    p = sub.add_parser("demo", help="enrich the sample data against the embedded sandbox (no key needed)")
    p.add_argument("--out", default="apollo_demo", help="output folder (default ./apollo_demo)")
    p.add_argument("--samples", default=None, help="folder with people.csv and companies.csv")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning on the command line: its text, not the launcher script's file and line."""
    print(f"warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning  # restored when the block ends
        return _run(args)


def _run(args) -> int:
    try:
        return args.func(args)
    except (AuthenticationError, PermissionDeniedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_AUTH
    except (ConfigurationError, ValueError, TypeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApolloError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
