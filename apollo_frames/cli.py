"""The ``apollo-frames`` command line.

Exit codes (:data:`EXIT_TABLE`; ``EXIT_CODES`` maps exceptions, first match
wins): 0 every row answered (``matched``, ``no_match``, ``invalid``); 1 failed
(or some rows ended in ``error``); 2 bad usage or input (a file with no rows);
3 the API key was refused (401/403); 4 stopped by a rate limit (a spent daily
window): the output file is written, the rows not done are ``skipped``, run
the same command again after the window resets and it continues from the
cache; 5 rows left ``skipped`` by ``--max-credits`` (or a host that stopped
answering); ``--allow-partial`` turns 1, 4 and 5 into 0 when rows were
answered; 130 interrupted (Ctrl-C or SIGTERM): every answer received is
stored first, one line says how many and how many rows are left, and the same
command resumes; 141 the output pipe closed early (``... | head``). Any other
exception is a bug and shows its traceback.

The operation commands (enrich-*, search-*, push-*) and ``estimate --op`` come
from the operation registry: each kind of operation has one parser builder and
one handler here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from apollo_frames._version import __version__
from apollo_frames.client.http import ApolloClient
from apollo_frames.client.ratelimit import WindowReading, parse_rate_headers
from apollo_frames.core.age import age_seconds
from apollo_frames.core.errors import (
    ApolloError,
    AuthenticationError,
    ColumnMappingError,
    ConfigurationError,
    FilterError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RunInterrupted,
    ValidationError,
)
from apollo_frames.core.settings import PLAN_PRESETS
from apollo_frames.engine.assemble import ERROR_CODE_COLUMN
from apollo_frames.engine.meter import try_read
from apollo_frames.engine.runner import host_of
from apollo_frames.engine.summary import RunSummary
from apollo_frames.estimates import estimate, estimate_file
from apollo_frames.io.files import OUTPUT_SUFFIXES, convert_parquet, output_path, read_frame, write_frame, write_parquet
from apollo_frames.io.stream import enrich_parquet, push_parquet
from apollo_frames.io.tables import clean_input
from apollo_frames.ops import registry
from apollo_frames.ops.changes import as_text, change_frame
from apollo_frames.ops.collect import collect
from apollo_frames.ops.orgs import enrich_orgs
from apollo_frames.ops.people import enrich_people
from apollo_frames.ops.push import PushSummary
from apollo_frames.ops.search import SearchSummary
from apollo_frames.reports import credit_summary, report

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_RATE_LIMITED, EXIT_PARTIAL = 0, 1, 2, 3, 4, 5
#: the output pipe was closed before everything was written (``... | head``): 128 + SIGPIPE, as shells report it
EXIT_PIPE = 141
#: reason groups printed at the end of a run
MAX_REASON_LINES = 8


#: the example notebooks, shipped inside the package
NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
#: Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130


#: the exit codes, for --help and the README
EXIT_TABLE = (
    (EXIT_OK, "every row answered: matched, no_match or invalid (each invalid row says why)"),
    (EXIT_FAILED, "some rows ended in error, or nothing reached the server (no output without --partial-output)"),
    (EXIT_USAGE, "bad usage or input: unknown flag, unreadable file, no column recognised, no rows"),
    (EXIT_AUTH, "the API key was refused (401/403)"),
    (EXIT_RATE_LIMITED, "stopped by a rate limit: rows left skipped; the same command later continues"),
    (EXIT_PARTIAL, "rows left skipped by --max-credits (or a host that stopped answering); run again to finish"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C, SIGTERM): answers received are stored; the same command resumes"),
    (EXIT_PIPE, "the output pipe closed early (... | head)"),
)
#: Python advice in a message -> the same advice as flags, for the command line (one table, used by _as_flags)
_FLAG_ADVICE = (
    (re.compile(r"columns=\{'([^']*)': '(\w+)'\}"), r"--map '\1=\2'"),
    (re.compile(r"\bmax_credits\b"), "--max-credits"),
    (re.compile(r"\bconfirm_over\b"), "--confirm-over"),
    (re.compile(r" or pass ApolloClient\(api_key=\.\.\.\)"), ""),
    (re.compile(r"apollo_frames\.use_sandbox\(\)"), "add --sandbox"),
)


EXIT_HELP = "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_TABLE)


def _as_flags(text: str) -> str:
    """A message's Python advice (``columns={...}``, ``max_credits``) written as command-line flags."""
    for pattern, flag in _FLAG_ADVICE:
        text = pattern.sub(flag, text)
    return text


class UsageError(ConfigurationError):
    """A command-line argument that cannot be used as given."""


#: exception -> exit code; the first class that matches wins; anything else is a bug and keeps its traceback
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (AuthenticationError, EXIT_AUTH),
    (PermissionDeniedError, EXIT_AUTH),
    (RateLimitError, EXIT_RATE_LIMITED),
    (ConfigurationError, EXIT_USAGE),  # UsageError too
    (InputError, EXIT_USAGE),
    (FilterError, EXIT_USAGE),
    (ColumnMappingError, EXIT_USAGE),
    (FileNotFoundError, EXIT_USAGE),
    (ApolloError, EXIT_FAILED),
)


def exit_code(exc: BaseException) -> int | None:
    """The exit code for ``exc`` (see ``EXIT_CODES``), or None when it is not one we raise on purpose."""
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), None)


def _parse_map(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    mapping = {}
    for pair in pairs:
        source, sep, target = pair.rpartition("=")
        if not sep or not source.strip() or not target.strip():
            raise UsageError(f"--map takes COLUMN=FIELD, got {pair!r}")
        mapping[source.strip()] = target.strip()
    return mapping


def parquet_path(value: str, what: str) -> Path:
    """An output path, refused early unless it names a .parquet, .csv or .xlsx file (written by its suffix)."""
    path = Path(value)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UsageError(f"{what} must be a .parquet, .csv or .xlsx file, got {path.name}")
    return output_path(path)


def _staged(path: Path) -> Path:
    """Where a streaming run writes before the output is converted: ``path`` itself when it is .parquet."""
    return path if path.suffix.lower() == ".parquet" else path.with_name(f".{path.name}.parquet")


def _explain(written: Path, host: str | None, column_reasons: dict | None = None) -> None:
    """The final lines of a run: why rows failed, grouped, with the fix where one is known (read from its output;
    ``column_reasons`` name the columns that almost fitted)."""
    names = [c for c in ("apollo_status", "apollo_error", ERROR_CODE_COLUMN) if c in pq.read_schema(written).names]
    frame = pq.read_table(written, columns=names).to_pandas()
    frame.index = pd.RangeIndex(1, len(frame) + 1)  # data rows counted from 1, as in a spreadsheet
    frame.attrs["apollo"] = {"column_reasons": column_reasons or {}}
    groups = report(frame, examples=3, host=host).groups
    for group in groups[:MAX_REASON_LINES]:
        print(f"  {_as_flags(group.line()).replace('(e.g. ', '(e.g. rows ')}")
    if len(groups) > MAX_REASON_LINES:
        print(f"  ... and {len(groups) - MAX_REASON_LINES} more reasons: result.apollo.report() shows them all")


def _existing(value: str) -> str:
    """An input path, refused before any client is built when it does not exist."""
    if not Path(value).exists():
        raise FileNotFoundError(f"input file not found: {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _credits(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of credits >= 0, got {text!r}")
    return value


def _label(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("a label cannot be blank")
    return text


def _client(args: argparse.Namespace, sandbox: Any = None) -> Any:
    cache_dir = getattr(args, "cache_dir", None)
    if sandbox is not None:
        return sandbox.client(cache_dir=cache_dir)
    return ApolloClient(cache_dir=cache_dir)


def _sandbox_if(args: argparse.Namespace) -> Any:
    if getattr(args, "sandbox", False):
        from apollo_frames.sandbox import Sandbox

        return Sandbox()
    return None


# -- commands ----------------------------------------------------------------------------------


def _enrich_options(args: argparse.Namespace) -> dict[str, Any]:
    """The operation's own flags given on the command line (--reveal-*, --webhook-url), by the names it takes."""
    given = {name: getattr(args, name, None) for name in args.spec.options if name != "columns"}
    return {name: value for name, value in given.items() if value not in (None, False)}


def _reading(args: argparse.Namespace) -> dict[str, Any]:
    """--encoding, --sep, --sheet, --header-row as read_table's keywords."""
    sep = {"tab": "\t", "\\t": "\t"}.get(args.sep, args.sep)
    return {"encoding": args.encoding, "sep": sep, "sheet": args.sheet, "header_row": args.header_row}


@contextlib.contextmanager
def _input(args: argparse.Namespace) -> Iterator[Path]:
    """The input as the run reads it (a clean copy when the file needs one); what was detected, on stderr, when
    it is not a plain UTF-8 CSV (one line; a plain file needs no word)."""
    with clean_input(_existing(args.input), **_reading(args)) as (src, detected):
        if detected is not None and detected.copied:
            print(detected.line(), file=sys.stderr, flush=True)
        yield src


def _partial_name(output: Path) -> Path:
    """``out.csv`` -> ``out.partial.csv``: a file that says it is not a result."""
    return output.with_name(f"{output.stem}.partial{output.suffix}")


def run_exit(summary: dict, allow_partial: bool = False) -> int:
    """The exit code of a finished run (see EXIT_TABLE): 0 only when every row was answered (or, with
    ``allow_partial``, when some were); never 0 for a run of no rows or one whose rows none was answered."""
    answered = summary["rows"] - summary["invalid"] - summary["errors"] - summary["skipped"]
    if not summary["rows"]:
        return EXIT_USAGE
    if summary["stopped_by_rate_limit"]:
        code = EXIT_RATE_LIMITED
    elif summary["errors"]:
        code = EXIT_FAILED
    elif summary["skipped"]:
        code = EXIT_PARTIAL
    else:
        return EXIT_OK
    return EXIT_OK if allow_partial and answered else code


def _nothing_reached(summary: dict) -> bool:
    """No row was answered and some were not done: the server never answered (dead host, refused key)."""
    return not summary["matched"] and not summary["no_match"] and bool(summary["errors"] + summary["skipped"]) and \
        summary["rows"] == summary["invalid"] + summary["errors"] + summary["skipped"]


def cmd_enrich(args) -> int:
    output, columns = parquet_path(args.output, "output"), _parse_map(args.map)
    with _input(args) as src, _client(args, _sandbox_if(args)) as client, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the skipped-rows message is printed below instead
        summary = enrich_parquet(
            src, dst=_staged(output), operation=args.spec.name, chunk_rows=args.chunk_rows, client=client,
            progress=not args.quiet, columns=columns, max_credits=args.max_credits, refresh=args.refresh,
            confirm_over=args.confirm_over, suppress=_suppress_file(args), max_age=args.max_age,
            **_enrich_options(args),
        )
        host = host_of(client)
    code = _finish_enrich(args, summary, output, host)
    if args.changes is not None:
        write_frame(as_text(change_frame(summary["changes"])), args.changes, formulas=_formulas(args))
        print(f"wrote {args.changes} | {len(set(summary['changes']['row'])):,} rows changed", file=sys.stderr)
    return code


def _max_age(text: str) -> float:
    """--max-age: text like 90d, 12h, 30m or 45s (or seconds), as seconds."""
    try:
        return age_seconds(text, name="the age") or 0.0  # (text is never None)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _suppress_file(args: argparse.Namespace) -> Path | None:
    """--suppress FILE: a text or CSV file of e-mails, domains, LinkedIn URLs or Apollo ids (must exist)."""
    return None if args.suppress is None else Path(_existing(args.suppress))


def _finish_enrich(args: argparse.Namespace, summary: dict, output: Path, host: str | None) -> int:
    """Print the run's lines, write the output (unless nothing reached the server), return the exit code."""
    fields = {k: summary[k] for k in RunSummary.__dataclass_fields__}
    if not summary["rows"]:
        _staged(output).unlink(missing_ok=True)
        raise InputError(f"{Path(args.input).name} has no data rows: nothing to enrich (no output written)")
    if _nothing_reached(summary):
        cause = summary.get("cause") or summary["message"] or "no row was answered"
        if not args.partial_output:
            _staged(output).unlink(missing_ok=True)
            print(_summary_line(fields), file=sys.stderr)
            print(f"error: nothing reached the server ({cause}); no output written. --partial-output writes the "
                  f"rows, as they are, to {_partial_name(output).name}", file=sys.stderr)
            return run_exit(summary)
        output = _staged(output).rename(_staged(_partial_name(output))) and _partial_name(output)
    print(f"wrote {output} | " + _summary_line(fields) + f" | run {summary['run_id']} (usage --by-run)")
    _explain(_staged(output), host, summary.get("column_reasons"))
    convert_parquet(_staged(output), output, formulas=_formulas(args))
    if summary["message"]:
        print(_as_flags(summary["message"]), file=sys.stderr)
    return run_exit(summary, args.allow_partial)


def _formulas(args: argparse.Namespace) -> str:
    """How .csv/.xlsx outputs write formula-like text: escaped unless --keep-formulas."""
    return "keep" if args.keep_formulas else "escape"


def _summary_line(summary: dict) -> str:
    return RunSummary.from_dict(summary).line()


def cmd_sandbox(args) -> int:
    from apollo_frames.sandbox import Sandbox, SandboxConfig

    config = SandboxConfig(seed=args.seed, n_orgs=args.orgs, latency=args.latency)
    if args.api_key:
        config = config.with_api_key(args.api_key)
    sandbox = Sandbox(config)
    base_url = sandbox.start(host="127.0.0.1", port=args.port)
    key = args.api_key or __import__("apollo_frames.sandbox", fromlist=["DEFAULT_API_KEY"]).DEFAULT_API_KEY
    print("Apollo sandbox listening (offline emulator, fictional data); press Ctrl-C to stop.", flush=True)
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
DOCTOR_PROBES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("POST", "people/bulk_match", {}),
    ("POST", "organizations/bulk_enrich", {}),
    ("POST", "mixed_people/api_search", {"per_page": 1, "q_organization_domains_list": ["doctor.invalid"]}),
    ("POST", "mixed_companies/search", {"per_page": 1, "q_organization_domains_list": ["doctor.invalid"]}),
    ("POST", "contacts/search", {"per_page": 1}),
    ("POST", "accounts/search", {"per_page": 1}),
    ("POST", "usage_stats/api_usage_stats", {}),
)


def health_refusal(data: Any) -> str | None:
    """Why an ``auth/health`` answer means the key was not accepted (None when it was).

    A refused key is normally a 401, but ``auth/health`` has also been seen answering
    200 ``{"is_logged_in": false}``: the request went through, the key did not.
    """
    if isinstance(data, dict) and data.get("is_logged_in") is False:
        return ("the API key was not accepted (auth/health answered is_logged_in: false). Check APOLLO_API_KEY: "
                "make a key in Apollo under Settings > Integrations > API.")
    return None


def cmd_doctor(args) -> int:
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
        refused = health_refusal(health.data)
        if refused:
            print(f"auth       REFUSED: {refused}")
            return EXIT_AUTH
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
    from apollo_frames.sandbox import client_for

    spec = registry.get(args.op)
    options: dict[str, Any] = {"reveal_phone_number": True} if args.reveal_phone_number else {}
    if args.max_age is not None:
        options["max_age"] = args.max_age
    if args.reveal_phone_number and "reveal_phone_number" not in spec.options:
        raise UsageError(f"--reveal-phone-number does not apply to --op {args.op}")
    columns = _parse_map(args.map)
    if args.pilot is not None:  # a pilot spends: it reads the file whole and enriches a sample of it
        with _input(args) as src, _client(args, _sandbox_if(args)) as client:
            result = estimate(read_frame(src), operation=spec.name, client=client, columns=columns, pilot=args.pilot,
                              **options)
        print(repr(result))
        return EXIT_OK
    # With --sandbox only the sandbox's cache namespace matters: no emulator is built, and an
    # attempt to send a request would fail loudly.
    with _input(args) as src:
        client = client_for(_refuse_requests, cache_dir=args.cache_dir) if args.sandbox else _client(args)
        with client:
            result = estimate_file(src, operation=spec.name, chunk_rows=args.chunk_rows, client=client, columns=columns,
                                   plan=args.plan, **options)
    print(repr(result))
    return EXIT_OK


def _usage_endpoint(key: str) -> str:
    """'["api/v1/people", "bulk_match"]' (documented) or 'api/v1/people/bulk_match' (seen live) -> 'people/bulk_match'
    (the endpoint names the toolkit uses)."""
    try:
        parts = json.loads(key)
    except ValueError:
        parts = None
    path = "/".join(str(p).strip("/") for p in parts) if isinstance(parts, list) else str(key).strip().strip("/")
    return path.removeprefix("api/v1/").removeprefix("v1/")


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
                  for i, (c, w) in enumerate(zip(r, widths, strict=False))).rstrip()
        for r in lines
    )


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


_Rows = list[tuple[str, dict[str, Any]]]


def _ledger_usage(client: Any) -> _Rows:
    """The last rate-limit readings the ledger recorded, one row per endpoint."""
    rows: _Rows = []
    for endpoint, windows in client.ledger.limits().items():
        row: dict[str, Any] = {
            w: {"limit": i["limit"], "consumed": i["usage"], "left": i["left"]} for w, i in windows.items()
        }
        newest = max(i["seen_at"] for i in windows.values())
        sources = sorted({i["source"] for i in windows.values()})
        row["seen"] = f"{newest.strftime('%Y-%m-%d %H:%M:%S UTC')} ({'/'.join(sources)})"
        rows.append((endpoint, row))
    return rows


def _stats_usage(data: Any, ledger: Any) -> _Rows:
    """usage_stats' answer, one row per endpoint; each endpoint's limits are remembered in the ledger."""
    rows: _Rows = []
    for key, windows in (data if isinstance(data, dict) else {}).items():
        if not isinstance(windows, dict):
            continue
        endpoint = _usage_endpoint(key)
        row: dict[str, Any] = {}
        for window in ("minute", "hour", "day"):
            info = windows.get(window)
            info = info if isinstance(info, dict) else {}
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
        ledger.note_limits(endpoint, readings, source="usage_stats")
    return sorted(rows, key=lambda r: r[0])


def cmd_usage(args) -> int:
    with _client(args, _sandbox_if(args)) as client:
        note = client.ledger.in_doubt_note()  # requests a killed run sent and never settled
        if note:
            print(note)
        if args.by_run:  # the ledger alone: nothing is sent
            runs = credit_summary(by="run", client=client)
            print(runs.to_string(index=False) if len(runs) else "no run recorded in the ledger yet")
            return EXIT_OK
        try:
            answer = client.post("usage_stats/api_usage_stats", json={})
        except (PermissionDeniedError, NotFoundError) as exc:
            status = getattr(exc, "status_code", "")
            print(
                f"usage_stats is not available to this key ({status}); showing instead the last rate-limit "
                f"headers recorded in the ledger ({client.ledger.path}):"
            )
            rows = _ledger_usage(client)
            if not rows:
                print("  none recorded yet: they are saved on every enrichment batch, so run one first.")
                return EXIT_OK
            print(_usage_table(rows, with_seen=True))
            print("('-' limit: Apollo sent no header for that window, i.e. unlimited; counts are as of 'seen'.)")
            return EXIT_OK
        rows = _stats_usage(answer.data, client.ledger)
        now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        print(f"Apollo usage_stats ({len(rows)} endpoints) as of {now}:")
        print(_usage_table(rows))
        _print_meter(client)
    return EXIT_OK


def _print_meter(client: Any) -> None:
    """Apollo's credit meter beside the credits this machine's ledger recorded this calendar month."""
    now = pd.Timestamp(client.clock.time(), unit="s", tz="UTC")
    month = now.normalize().replace(day=1)  # the month's start in UTC (no Period: it drops the zone, and warns)
    spent = float(client.ledger.frame(since=month)["credits"].sum())
    print(f"\nledger: {spent:,.0f} credits recorded since {month:%Y-%m-%d} by this machine")
    balance = try_read(client)
    if balance is not None:
        print(repr(balance))


def cmd_collect(args) -> int:
    """Poll the phones (and waterfall results) an enrich-people run left pending; write the merged table."""
    src, output = _existing(args.input), parquet_path(args.output, "output")
    with _client(args, _sandbox_if(args)) as client:
        result = collect(read_frame(src), wait=not args.no_wait, max_wait=args.max_wait, client=client,
                         allow_dnc=args.allow_dnc)
    write_frame(result, output, formulas=_formulas(args))
    info = result.attrs["apollo_collect"]
    print(f"wrote {output} | requests {info['requests']:,}: done {info['done']:,}, pending {info['pending']:,}, "
          f"failed {info['failed']:,}, expired {info['expired']:,} | phones {info['phones']:,} | "
          f"credits {info['credits']:g}" + _dnc_note(info["do_not_call"]))
    return EXIT_OK


def _dnc_note(withheld: dict[str, int]) -> str:
    """The collect line's word on numbers left out as do-not-call, by Apollo's code."""
    if not withheld:
        return ""
    codes = ", ".join(f"{code} {n:,}" for code, n in sorted(withheld.items()))
    return f" | {sum(withheld.values()):,} numbers left out as do-not-call ({codes}; --allow-dnc keeps them)"


def cmd_cache(args) -> int:
    from apollo_frames.client.store_admin import cache_command

    print(cache_command(args.action, args.cache_dir, older_than=args.older_than, path=args.path))
    return EXIT_OK


def cmd_forget(args) -> int:
    """Erase people from the cache folder and suppress them (``apollo_frames.forget``)."""
    from apollo_frames.privacy import forget

    values = list(args.values) + (_lines(Path(_existing(args.file))) if args.file else [])
    if not values:
        raise UsageError("forget needs identifiers (e-mails, domains, LinkedIn URLs, Apollo ids) or --file FILE")
    with ApolloClient(cache_dir=args.cache_dir) as client:
        print(forget(values, client=client))
    return EXIT_OK


def _lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", errors="replace") as lines:
        return list(lines)


def _parse_filters(pairs: list[str] | None) -> dict:
    """--filter NAME=VALUE pairs -> filters; a name repeated (``x`` or ``x[]``) accumulates a list."""
    filters: dict = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        name = name.strip()
        name = name.removesuffix("[]")
        if not sep or not name:
            raise UsageError(f"--filter takes NAME=VALUE, got {pair!r}")
        value = value.strip()
        if name in filters:
            before = filters[name]
            filters[name] = (before if isinstance(before, list) else [before]) + [value]
        else:
            filters[name] = value
    return filters


def cmd_search(args) -> int:
    output = parquet_path(args.output, "output")
    filters = _parse_filters(args.filter)
    if "max_credits" in args.command_spec.flags:
        filters["max_credits"] = args.max_credits
    search = args.command_spec.call
    with _client(args, _sandbox_if(args)) as client:
        result = search(max_results=args.max_results, client=client, progress=not args.quiet, refresh=args.refresh,
                        suppress=_suppress_file(args), **filters)
    write_frame(result, output, formulas=_formulas(args))
    print(f"wrote {output} | " + SearchSummary(**result.attrs["apollo"]).line())
    return EXIT_OK


def cmd_push(args) -> int:
    src, report = _existing(args.input), parquet_path(args.report, "--report")
    options = {
        "chunk_rows": args.chunk_rows, "progress": not args.quiet, "mode": args.mode, "columns": _parse_map(args.map),
        "run_dedupe": not args.no_dedupe, "labels": args.label, "dry_run": args.dry_run,
        "default_region": args.default_region, "suppress": _suppress_file(args),
    }
    if "allow_dnc" in args.spec.options:
        options["allow_dnc"] = args.allow_dnc
    target = args.spec.target
    host = None
    if args.dry_run:
        # a dry run sends nothing and needs no key
        summary = push_parquet(src, dst=_staged(report), target=target, **options)
    else:
        with _client(args, _sandbox_if(args)) as client:
            summary = push_parquet(src, dst=_staged(report), target=target, client=client, **options)
            host = host_of(client)
    fields = {k: summary[k] for k in PushSummary.__dataclass_fields__}
    print(f"wrote {report} | " + PushSummary(**fields).line())  # a rate-limit stop was warned about already
    _explain(_staged(report), host)
    convert_parquet(_staged(report), report, formulas=_formulas(args))
    if summary["stopped_by_rate_limit"]:
        return EXIT_RATE_LIMITED
    return EXIT_FAILED if summary["errors"] else EXIT_OK


def _samples_dir(explicit: str | None, out: Path) -> Path:
    """The sample CSVs: --samples DIR, else written into ``out/samples`` from the sandbox's world (as committed)."""
    if explicit:
        if not (Path(explicit) / "people.csv").exists():
            raise FileNotFoundError(f"sample data not found in {explicit} (people.csv, companies.csv)")
        return Path(explicit)
    from apollo_frames.sandbox.samples import write_samples

    write_samples(out / "samples")  # a pure function of the seed: the same files as the repository's data/samples
    return out / "samples"


def cmd_notebooks(args) -> int:
    """Copy the notebooks shipped in the package into ``FOLDER/notebooks`` and the sample data they read into
    ``FOLDER/data/samples`` (the repository's layout, so their ``../data/samples`` paths hold); existing files are kept.
    """
    folder = Path(args.folder)
    shipped = sorted(NOTEBOOKS.glob("*.ipynb"))
    if not shipped:
        raise FileNotFoundError(f"no notebooks found in the package ({NOTEBOOKS})")
    (folder / "notebooks").mkdir(parents=True, exist_ok=True)
    for notebook in shipped:
        target = folder / "notebooks" / notebook.name
        if target.exists():
            print(f"kept      {target} (already there)")
            continue
        shutil.copyfile(notebook, target)
        print(f"copied    {target}")
    if not (folder / "data" / "samples" / "people.csv").exists():
        _samples_dir(None, folder / "data")
        print(f"wrote     {folder / 'data' / 'samples'} (the sample data the notebooks read)")
    print(f"open them with: jupyter lab {folder / 'notebooks'}   (pip install 'apollo_frames[notebook]' installs it)")
    return EXIT_OK


def cmd_demo(args) -> int:
    from apollo_frames.sandbox import Sandbox

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samples = _samples_dir(args.samples, out)
    print("apollo_frames demo: the embedded Apollo sandbox stands in for Apollo "
          "(no key needed, no real credits spent).")
    sandbox = Sandbox()
    with sandbox.client(cache_dir=out / "cache") as client:
        people_in = read_frame(samples / "people.csv")
        enriched = enrich_people(people_in, client=client, progress=not args.quiet)
        write_parquet(enriched, out / "people_enriched.parquet")
        print(f"people    -> {out / 'people_enriched.parquet'}\n  {_summary_line(enriched.attrs['apollo'])}")
        companies_in = read_frame(samples / "companies.csv")
        companies = enrich_orgs(companies_in, client=client, progress=not args.quiet)
        write_parquet(companies, out / "companies_enriched.parquet")
        print(f"companies -> {out / 'companies_enriched.parquet'}\n  {_summary_line(companies.attrs['apollo'])}")
        again = enrich_people(people_in, client=client, progress=False)
        print(f"re-run of people, all from the cache:\n  {_summary_line(again.attrs['apollo'])}")
        counts = enriched["apollo_status"].value_counts().to_dict()
        print(f"people statuses: {counts}")
        print(f"fictional credits the sandbox counted in all: {sandbox.credits_consumed:g}")
    return EXIT_OK


# -- parser ------------------------------------------------------------------------------------

#: subcommand -> its examples (the epilog of its --help); every subcommand has one (tests/test_cli.py checks)
EXAMPLES: dict[str, str] = {
    "collect": (
        "apollo-frames enrich-people leads.csv out.parquet --reveal-phone-number\n"
        "apollo-frames collect out.parquet with_phones.parquet --max-wait 600"
    ),
    "enrich-people": (
        "apollo-frames enrich-people leads.csv leads_enriched.parquet --max-credits 500\n"
        "apollo-frames enrich-people export.xlsx enriched.csv --map 'Work Email=email' --confirm-over 100\n"
        "apollo-frames enrich-people leads.csv out.parquet --reveal-personal-emails --sandbox"
    ),
    "enrich-orgs": (
        "apollo-frames enrich-orgs companies.csv companies_enriched.parquet\n"
        "apollo-frames enrich-orgs accounts.xlsx accounts.csv --map 'Website URL=domain' --max-credits 200"
    ),
    "search-people": (
        "apollo-frames search-people vps.parquet --filter person_titles='VP Sales' "
        "--filter person_locations=Germany --max-results 200"
    ),
    "search-orgs": (
        "apollo-frames search-orgs saas.csv --filter q_organization_keyword_tags=saas "
        "--filter organization_num_employees_ranges=51,200 --max-credits 5"
    ),
    "push-contacts": (
        "apollo-frames push-contacts people.csv --report push_report.csv --dry-run\n"
        "apollo-frames push-contacts people.csv --report push_report.parquet --label 'Q3 import'"
    ),
    "push-accounts": "apollo-frames push-accounts companies.csv --report accounts_report.csv --mode upsert",
    "sandbox": "apollo-frames sandbox --port 8787   # then export the two lines it prints",
    "doctor": "apollo-frames doctor\napollo-frames doctor --sandbox",
    "estimate": (
        "apollo-frames estimate leads.csv --op enrich-people --plan paid\n"
        "apollo-frames estimate companies.xlsx --op enrich-orgs --sandbox"
    ),
    "usage": "apollo-frames usage",
    "cache": "apollo-frames cache info\napollo-frames cache prune --older-than 30d\n"
             "apollo-frames cache export answers.parquet",
    "forget": "apollo-frames forget jane@acme.com linkedin.com/in/jane-doe\n"
              "apollo-frames forget --file erasure_requests.csv   # every value of every line",
    "demo": "cd /tmp && apollo-frames demo --out apollo_demo   # works from any folder, no key needed",
    "notebooks": "apollo-frames notebooks ~/apollo && jupyter lab ~/apollo/notebooks",
}


def _describe(sub: Any) -> None:
    """Give every subcommand's --help a description (its one-line help) and its examples."""
    helps = {action.dest: action.help for action in sub._choices_actions}
    for name, p in sub.choices.items():
        p.description = p.description or (helps.get(name) or "").capitalize() or None
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        if name in EXAMPLES:
            p.epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name].splitlines())


def _add_run_options(p: argparse.ArgumentParser, chunked: bool = False) -> None:
    """--cache-dir, --sandbox, --quiet (and --chunk-rows for the streaming commands)."""
    p.add_argument("--cache-dir", default=None, help="default: $APOLLO_FRAMES_CACHE_DIR or ~/.cache/apollo_frames")
    p.add_argument("--sandbox", action="store_true", help="use the embedded offline sandbox instead of Apollo")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_keep_formulas(p)
    if chunked:
        _add_chunk_rows(p)


def _add_keep_formulas(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep-formulas", action="store_true",
                   help="write .csv/.xlsx text starting with = + - @ as is (default: prefixed with ' so that a "
                        "spreadsheet does not run it as a formula)")


def _add_chunk_rows(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chunk-rows", type=_positive_int, default=10_000,
                   help="rows read, processed and written at a time")


def _add_map(p: argparse.ArgumentParser) -> None:
    p.add_argument("--map", action="append", metavar="COLUMN=FIELD", help="map an input column to an Apollo field")


def _add_reading(p: argparse.ArgumentParser) -> None:
    """--encoding, --sep, --sheet, --header-row: each overrides one guess of read_table."""
    p.add_argument("--encoding", default=None, help="the input's encoding, e.g. cp1252 (default: detected)")
    p.add_argument("--sep", default=None, help="the CSV separator: , ; tab | (default: detected)")
    p.add_argument("--sheet", default=None, help="the .xlsx sheet to read (default: the one whose columns are known)")
    p.add_argument("--header-row", type=_positive_int, default=None, metavar="N",
                   help="the line (sheet row) of the header, from 1 (default: the first that looks like one)")


def _add_partial(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-partial", action="store_true",
                   help="exit 0 when some rows were answered and others left skipped or in error")
    p.add_argument("--partial-output", action="store_true",
                   help="when nothing reached the server, still write the rows, to OUT.partial.<suffix>")


def _add_suppress(p: argparse.ArgumentParser, what: str = "send, keep or return") -> None:
    p.add_argument("--suppress", default=None, metavar="FILE",
                   help=f"never {what} these e-mails, domains, LinkedIn URLs or Apollo ids (a text or CSV file), "
                        "beside the cache folder's suppression list")


def _add_allow_dnc(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--allow-dnc", action="store_true", help=text)


def _enrich_arguments(p: argparse.ArgumentParser, command: registry.Command) -> None:
    p.add_argument("input", help=".csv, .tsv, .xlsx or .parquet (encoding, separator and header row detected)")
    p.add_argument("output", help=".parquet, .csv or .xlsx (written by its suffix)")
    _add_map(p)
    _add_reading(p)
    _add_partial(p)
    p.add_argument("--max-credits", type=_credits, default=None, help="never spend more than this in the run")
    p.add_argument("--confirm-over", type=_credits, default=None, metavar="CREDITS",
                   help="ask before a run whose worst case is above this many credits (refused when nobody can answer)")
    _add_suppress(p)
    options = registry.get(command.name.replace("-", "_")).options
    if "reveal_personal_emails" in options:
        p.add_argument("--reveal-personal-emails", action="store_true", help="ask for personal emails (+1 credit)")
    if "reveal_phone_number" in options:
        p.add_argument("--webhook-url", default=None,
                       help="with --reveal-phone-number: where Apollo delivers the phones (without it they are polled)")
    p.add_argument("--refresh", action="store_true", help="ignore cached answers (they are still updated)")
    p.add_argument("--max-age", type=_max_age, default=None, metavar="AGE",
                   help="fetch again the answers stored longer ago than this: 90d, 12h, 30m, 45s")
    p.add_argument("--changes", default=None, metavar="FILE",
                   help="write what the answers fetched again changed (row, change_kind, field, old, new) to FILE "
                        "(.csv, .parquet or .xlsx)")
    for flag, text in _ASYNC_FLAGS.items():
        if flag in command.flags:
            p.add_argument("--" + flag.replace("_", "-"), action="store_true", help=text)
    if "allow_dnc" in options:
        _add_allow_dnc(p, "show numbers flagged do-not-call in person.mobile_phone (left out by default)")
    _add_run_options(p, chunked=True)


#: people: asynchronous results, polled (fetch them later with ``apollo-frames collect``)
_ASYNC_FLAGS = {
    "reveal_phone_number": "mobile phones (+8 credits each), polled: fetch them with `apollo-frames collect`",
    "waterfall": "Apollo's waterfall e-mails and phones, polled: fetch them with `apollo-frames collect`",
}
#: the --filter help's example, per search command
FILTER_EXAMPLES = {"search-people": "person_titles='VP Sales'", "search-orgs": "q_organization_keyword_tags=saas"}


def _search_arguments(p: argparse.ArgumentParser, command: registry.Command) -> None:
    p.add_argument("output", help=".parquet")
    p.add_argument(
        "--filter", action="append", metavar="NAME=VALUE",
        help="an Apollo search filter, e.g. " + FILTER_EXAMPLES.get(command.name, "person_titles='VP Sales'")
        + "; repeat a name for a list of values",
    )
    p.add_argument("--max-results", type=_positive_int, default=100,
                   help="return at most this many records (default 100)")
    if "max_credits" in command.flags:
        p.add_argument("--max-credits", type=_credits, default=None, help="never spend more than this in the run")
    p.add_argument("--refresh", action="store_true", help="ignore cached pages (they are still updated)")
    _add_suppress(p, "search for, keep or return")
    _add_run_options(p)


def _push_arguments(p: argparse.ArgumentParser, command: registry.Command) -> None:
    p.add_argument("input", help=".csv or .parquet")
    p.add_argument("--mode", choices=["upsert", "insert", "update"], default="upsert")
    p.add_argument("--report", required=True, help=".parquet: the input with apollo_status, apollo_id, apollo_error")
    p.add_argument("--dry-run", action="store_true", help="send nothing; report what would be sent")
    _add_map(p)
    p.add_argument("--label", action="append", type=_label, metavar="NAME",
                   help="label added to the records created (repeatable)")
    p.add_argument("--no-dedupe", action="store_true",
                   help="bulk_create without run_dedupe (unknown outcomes are not retried)")
    p.add_argument("--default-region", default="US", help="region for phone numbers without a +country code")
    _add_suppress(p, "push")
    if "allow_dnc" in registry.get(command.name.replace("-", "_")).options:
        _add_allow_dnc(p, "write phone numbers the input's person.phone_numbers flags do-not-call "
                          "(left out by default)")
    _add_run_options(p, chunked=True)


#: operation kind -> (its commands' arguments, their handler)
_KIND_COMMANDS: dict[str, tuple[Any, Any]] = {
    "enrich": (_enrich_arguments, cmd_enrich),
    "search": (_search_arguments, cmd_search),
    "push": (_push_arguments, cmd_push),
}


def _add_operation_commands(sub: Any, kind: str) -> None:
    """One subcommand per command the registered operations of ``kind`` declare."""
    arguments, handler = _KIND_COMMANDS[kind]
    for spec in registry.operations(kind):
        for command in spec.commands:
            p = sub.add_parser(command.name, help=command.help)
            arguments(p, command)
            p.set_defaults(func=handler, spec=spec, command_spec=command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apollo-frames", description="Enrich tables through the Apollo.io API: batched, cached, credit-aware.",
        epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"apollo-frames {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_operation_commands(sub, "enrich")

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

    p = sub.add_parser("estimate",
                       help="what an enrichment would cost: cache hits, calls, credits, duration (sends nothing)")
    p.add_argument("--plan", choices=sorted(PLAN_PRESETS), default=None,
                   help="your Apollo plan's rate limits for the duration (default: limits seen in headers, else free)")
    p.add_argument("input", help=".csv, .tsv, .xlsx or .parquet (encoding, separator and header row detected)")
    ops = [spec.name.replace("_", "-") for spec in registry.operations("enrich")]
    p.add_argument("--op", required=True, choices=ops, help="the operation to estimate")
    _add_map(p)
    _add_reading(p)
    p.add_argument("--reveal-phone-number", action="store_true", help="people: price the phone reveal (+8 credits)")
    p.add_argument("--max-age", type=_max_age, default=None, metavar="AGE",
                   help="count as to fetch the answers stored longer ago than this (as enrich --max-age would)")
    p.add_argument("--cache-dir", default=None, help="default: $APOLLO_FRAMES_CACHE_DIR or ~/.cache/apollo_frames")
    p.add_argument("--sandbox", action="store_true", help="estimate against the embedded sandbox's cache")
    p.add_argument("--pilot", type=_positive_int, default=None, metavar="N",
                   help="first enrich a stratified sample spending at most N credits (answers kept) and "
                        "extrapolate from its match rate, with a 90%% interval")
    _add_chunk_rows(p)
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("usage", help="rate limits used and left per endpoint (usage_stats; ledger if refused)")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--by-run", action="store_true",
                   help="credits per run from the ledger (sends nothing): a run's id is in its output's "
                        "apollo_credits total and in the summary (attrs['apollo']['run_id'])")
    p.add_argument("--sandbox", action="store_true", help="ask the embedded sandbox")
    p.set_defaults(func=cmd_usage)

    p = sub.add_parser("collect", help="fetch the phones / waterfall results an enrich-people run left pending")
    p.add_argument("input", help="the .parquet (or .csv) an enrich-people run with --reveal-phone-number wrote")
    p.add_argument("output", help=".parquet, .csv or .xlsx (written by its suffix)")
    p.add_argument("--no-wait", action="store_true", help="take what is ready, leave the rest pending")
    p.add_argument("--max-wait", type=float, default=600.0, help="seconds to keep polling (default 600)")
    p.add_argument("--allow-dnc", action="store_true",
                   help="also write numbers flagged do-not-call into person.mobile_phone (left out by default)")
    _add_keep_formulas(p)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--sandbox", action="store_true", help="ask the embedded sandbox")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("cache", help="the answer store: info, prune, verify, export/import as Parquet")
    p.add_argument("action", choices=["info", "prune", "verify", "export", "import"])
    p.add_argument("path", nargs="?", default=None, help="export/import: the .parquet file")
    p.add_argument("--older-than", default="30d", help="prune: entries stored longer ago than this (30d, 12h, 2w); "
                   "also those past APOLLO_FRAMES_RETENTION")
    p.add_argument("--cache-dir", default=None, help="default: $APOLLO_FRAMES_CACHE_DIR or ~/.cache/apollo_frames")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("forget", help="erase people from the cache folder (compacted) and suppress them")
    p.add_argument("values", nargs="*", help="e-mails, domains (everyone at it), LinkedIn URLs or Apollo ids")
    p.add_argument("--file", default=None, metavar="F", help="a text or CSV file of them (every value of every line)")
    p.add_argument("--cache-dir", default=None, help="default: $APOLLO_FRAMES_CACHE_DIR or ~/.cache/apollo_frames")
    p.set_defaults(func=cmd_forget)

    _add_operation_commands(sub, "search")
    _add_operation_commands(sub, "push")

    p = sub.add_parser("demo", help="enrich the sample data against the embedded sandbox (no key needed)")
    p.add_argument("--out", default="apollo_demo", help="output folder (default ./apollo_demo)")
    p.add_argument("--samples", default=None, help="folder with people.csv and companies.csv")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("notebooks", help="copy the example notebooks into a folder (to open with jupyter lab)")
    p.add_argument("folder", help="where to put them: FOLDER/notebooks and the sample data in FOLDER/data/samples "
                   "(created if missing; existing files are kept)")
    p.set_defaults(func=cmd_notebooks)
    _describe(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning on the command line: its text, not the launcher script's file and line."""
    print(f"warning: {message}", file=file or sys.stderr)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM takes the Ctrl-C path (what was received is stored, then one line and exit
    130): Python's own Ctrl-C handler, which a run defers to a safe point. Only the command line does this."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings(), _sigterm_as_interrupt():
        warnings.showwarning = _show_warning  # restored when the block ends
        return _run(args)


def _run(args) -> int:
    """Run the command; an error we raise on purpose becomes its message and exit code, a bug keeps its traceback.

    Ctrl-C (or SIGTERM) prints one line, what was saved and what is left, and exits 130.
    """
    try:
        return args.func(args)
    except BrokenPipeError:  # the reader went away (... | head): end quietly, with nothing more to flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except KeyboardInterrupt as exc:
        # a command with nothing to count (doctor, usage, collect, reading the input) says only that
        line = exc.line() if isinstance(exc, RunInterrupted) else "interrupted; run the same command to resume"
        print(line, file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as exc:
        code = exit_code(exc)
        if code is None:
            raise
        print(f"error: {_as_flags(str(exc))}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
