"""The operation registry and what reads it: the CLI, the accessor, estimate, the streaming path; one assembler."""

from __future__ import annotations

import argparse
import inspect
import math
import warnings

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import apollo_frames as af
from apollo_frames import accessor, cli, estimates
from apollo_frames.core.errors import InputError
from apollo_frames.io import files
from apollo_frames.ops import registry
from apollo_frames.sandbox import Sandbox

FRAME_ARGS = {"frame"}


def known_people(sandbox, n, start=0):
    return [p for p in sandbox.world.people if p.get("email")][start:start + n]


def people_frame(sandbox, n=12):
    people = known_people(sandbox, n)
    rows = [{"Email": p["email"], "First Name": p["first_name"], "n": i} for i, p in enumerate(people)]
    rows.append({"Email": "not an email", "First Name": "Bad", "n": n})
    rows.append({"Email": "nobody@unknown-company.example", "First Name": "Ghost", "n": n + 1})
    return pd.DataFrame(rows)


def orgs_frame(sandbox, n=8):
    return pd.DataFrame({"domain": [o["primary_domain"] for o in sandbox.world.orgs[:n]] + ["not a domain"]})


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# -- the registry and its readers ------------------------------------------------------------------


def test_the_registry_holds_every_operation_once():
    names = [spec.name for spec in registry.operations()]
    assert sorted(names) == ["enrich_orgs", "enrich_people", "push_accounts", "push_contacts", "search"]
    assert len(set(names)) == len(names)
    assert registry.get("enrich-people") is registry.get("enrich_people")
    with pytest.raises(ValueError, match="enrich_orgs, enrich_people"):
        registry.get("search", kind="enrich")


@pytest.mark.parametrize("spec", registry.operations(), ids=lambda s: s.name)
def test_every_operation_is_reachable_from_the_cli(spec):
    commands = subcommands()
    assert spec.commands, f"{spec.name} declares no command"
    for command in spec.commands:
        defaults = commands[command.name].parse_known_args(_minimal_args(spec))[0]
        assert defaults.spec is spec and defaults.command_spec is command
    if spec.kind == "enrich":
        estimate_op = next(a for a in commands["estimate"]._actions if a.dest == "op")
        assert spec.name.replace("_", "-") in estimate_op.choices


def _minimal_args(spec) -> list[str]:
    return {"enrich": ["in.csv", "out.parquet"], "search": ["out.parquet"],
            "push": ["in.csv", "--report", "r.parquet"]}[spec.kind]


@pytest.mark.parametrize("spec", registry.operations(), ids=lambda s: s.name)
def test_every_operation_is_an_accessor_method_calling_its_function(spec):
    method = getattr(pd.DataFrame({"a": [1]}).apollo, spec.method_name)
    assert method.__wrapped__ is spec.function
    assert accessor.methods()[spec.method_name] is spec.function


@pytest.mark.parametrize("spec", registry.operations(), ids=lambda s: s.name)
def test_every_operation_is_estimable_or_refused_clearly(spec, sandbox, client):
    frame = people_frame(sandbox, 3) if spec.name != "enrich_orgs" else orgs_frame(sandbox, 3)
    if not spec.estimable:
        with pytest.raises(ValueError, match="no estimate for operation"):
            af.estimate(frame, operation=spec.name, client=client)
        return
    options = {"kind": "people", "max_results_per_row": 5} if spec.kind == "search" else {}
    if spec.kind == "search":
        frame = frame.assign(domain=[o["primary_domain"] for o in sandbox.world.orgs[:len(frame)]])
    est = af.estimate(frame, operation=spec.name, client=client, **options)
    assert est.rows == len(frame) and est.to_fetch > 0
    assert sandbox.count() == 0


@pytest.mark.parametrize("spec", registry.operations(), ids=lambda s: s.name)
def test_every_row_aligned_operation_streams(spec, sandbox, client, tmp_path):
    src, dst = tmp_path / "in.parquet", tmp_path / "out.parquet"
    frame = orgs_frame(sandbox) if spec.name in ("enrich_orgs", "push_accounts") else people_frame(sandbox)
    frame.to_parquet(src)
    if spec.kind == "search":
        with pytest.raises(ValueError, match="operation must be one of"):
            af.enrich_parquet(src, dst=dst, operation=spec.name, client=client, progress=False)
        return
    if spec.kind == "enrich":
        summary = af.enrich_parquet(src, dst=dst, operation=spec.name, client=client, progress=False, chunk_rows=4)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # columns with no Apollo field are named, not pushed
            summary = af.push_parquet(src, dst=dst, target=spec.target, progress=False, chunk_rows=4, dry_run=True)
    assert summary["rows"] == len(frame) and summary["chunks"] == math.ceil(len(frame) / 4)
    out = pq.read_table(dst)
    assert out.column_names[-len(spec.schema({"dry_run": True})):] == spec.schema({"dry_run": True}).names


@pytest.mark.parametrize("spec", registry.operations(), ids=lambda s: s.name)
def test_declared_options_match_the_functions(spec):
    params = set(inspect.signature(spec.function).parameters) - FRAME_ARGS
    params -= {"progress", "client", "filters"}
    if spec.kind == "enrich":
        assert set(inspect.signature(spec.job).parameters) - FRAME_ARGS == set(spec.options)
        assert params | {"progress"} == set(spec.options) | set(registry.RUN_OPTIONS)
    elif spec.kind == "push":
        assert params == set(spec.options)
    else:
        assert set(spec.options) <= params


def test_the_public_namespace_lists_everything_it_exports():
    public = {name for name, value in vars(af).items()
              if not name.startswith("_") and not inspect.ismodule(value)}
    assert public | {"__version__"} == set(af.__all__)
    assert {"push_parquet", "estimate_file", "InputError", "ColumnMappingError"} <= set(af.__all__)
    assert all(hasattr(af, name) for name in af.__all__)


# -- the accessor cannot drift from the functions --------------------------------------------------


@pytest.mark.parametrize("name, function", sorted(accessor.methods().items()))
def test_accessor_method_has_its_functions_signature_and_docstring(name, function):
    method = getattr(accessor.ApolloAccessor, name)
    method_params = list(inspect.signature(method).parameters.values())
    function_params = list(inspect.signature(function).parameters.values())
    assert method_params[0].name == "self"
    assert method_params[1:] == function_params[1:], f"df.apollo.{name} differs from {function.__name__}"
    assert inspect.signature(method).return_annotation == inspect.signature(function).return_annotation
    assert method.__doc__ == function.__doc__ and method.__doc__


def test_accessor_forwards_every_argument(sandbox, client, tmp_path):
    from apollo_frames.client.ledger import Ledger

    ledger = Ledger(tmp_path / "own-ledger.sqlite")
    people_frame(sandbox, 3).apollo.enrich_people(client=client, progress=False, ledger=ledger)
    # ledger= reached the function (the hand-written method dropped it): the batch is in this ledger only
    assert len(ledger.frame()) == 1 and ledger.total_credits() == 3
    assert client.ledger.total_credits() == 0
    ledger.close()


# -- one assembler ---------------------------------------------------------------------------------


def _same_columns_and_dtypes(streamed: pd.DataFrame, in_memory: pd.DataFrame) -> None:
    assert list(streamed.columns) == list(in_memory.columns)
    assert list(streamed.dtypes) == list(in_memory.dtypes)
    when = "apollo_fetched_at"  # (two stores, two times: the same rows were answered)
    if when in in_memory.columns:
        assert streamed[when].isna().tolist() == in_memory[when].isna().tolist()
        streamed, in_memory = streamed.drop(columns=[when]), in_memory.drop(columns=[when])
    pd.testing.assert_frame_equal(streamed, in_memory)


@pytest.mark.parametrize("operation", ["enrich_people", "enrich_orgs"])
def test_in_memory_and_streaming_assemble_the_same_table(operation, sandbox, tmp_path):
    frame = people_frame(sandbox) if operation == "enrich_people" else orgs_frame(sandbox)
    frame["apollo_status"] = "stale"  # named like ours: replaced in both
    frame["score"] = pd.array([1.5] * (len(frame) - 1) + [None], dtype="Float64")
    frame.index = pd.Index([f"r{i}" for i in range(len(frame))], name="key")
    src = tmp_path / "in.parquet"
    frame.to_parquet(src)
    function = registry.get(operation).function
    with sandbox.client(cache_dir=tmp_path / "c1") as c:
        in_memory = function(frame, client=c, progress=False)
    with Sandbox(sandbox.config).client(cache_dir=tmp_path / "c2") as c:
        af.enrich_parquet(src, dst=tmp_path / "out.parquet", operation=operation, chunk_rows=5, client=c, progress=False)
    streamed = pd.read_parquet(tmp_path / "out.parquet")
    _same_columns_and_dtypes(streamed, in_memory)
    new = registry.get(operation).schema({}).names
    assert list(in_memory.columns) == [c for c in frame.columns if c not in new] + new
    assert in_memory.index.equals(frame.index)


def test_push_report_in_memory_and_streamed_are_one_table(tmp_path):
    frame = pd.DataFrame({"email": ["a@x1.example", "b@x2.example", "a@x1.example", "nope"],
                          "apollo_payload": ["old"] * 4})  # a stale dry-run column: dropped in both
    src = tmp_path / "in.parquet"
    frame.to_parquet(src)
    # a dry run sends nothing and fills every column of the report
    in_memory = af.push_contacts(frame, dry_run=True, progress=False)
    af.push_parquet(src, dst=tmp_path / "r.parquet", target="contacts", dry_run=True, progress=False, chunk_rows=3)
    _same_columns_and_dtypes(pd.read_parquet(tmp_path / "r.parquet"), in_memory)
    assert list(in_memory.columns) == ["email", "apollo_status", "apollo_id", "apollo_error", "apollo_error_code",
                                      "apollo_payload"]


def test_new_columns_never_drop_a_value():
    from apollo_frames.engine.assemble import new_columns

    table = new_columns({"apollo_id": ["a", None, 7]})
    assert table.column("apollo_id").to_pylist() == ["a", None, "7"]
    assert table.schema.field("apollo_id").type == pa.string()


# -- estimate reads files as enrich does -----------------------------------------------------------


def test_estimate_file_streams_and_predicts_the_file_run(sandbox, tmp_path, monkeypatch):
    people = known_people(sandbox, 30)
    emails = [p["email"] for p in people] + [people[i]["email"] for i in range(0, 30, 3)]  # repeats in later chunks
    lines = ["Email,First Name"] + [f"{e},x" for e in emails] + ["NA,y", "None,z", "<NA>,w"]
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(pd, "read_csv", None)  # estimate must not read the whole file with pandas
    chunk_batches = []
    real_rechunk = files.rechunk

    def spy(batches, rows):
        for table in real_rechunk(batches, rows):
            chunk_batches.append(table.num_rows)
            yield table

    monkeypatch.setattr(files, "rechunk", spy)
    with sandbox.client(cache_dir=tmp_path / "c") as c:
        est = estimates.estimate_file(src, operation="enrich_people", chunk_rows=7, client=c)
        assert sandbox.count() == 0
        assert chunk_batches == [7] * 6 + [1]  # streamed 7 rows at a time
        assert (est.rows, est.invalid, est.unique, est.cached, est.to_fetch) == (43, 3, 30, 0, 30)
        summary = af.enrich_parquet(src, dst=tmp_path / "o.parquet", chunk_rows=7, client=c, progress=False)
    # a file run sends each chunk's new records in its own calls: the estimate counts them the same way
    assert est.api_calls == summary["api_calls"] == sandbox.count(path="people/bulk_match")
    assert est.credits_max == summary["credits_consumed"] == 30
    assert summary["invalid"] == est.invalid  # the same missing values ("NA", "None", "<NA>")


def test_cli_estimate_reads_the_file_like_enrich(sandbox, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in.csv"
    src.write_text("Email,First Name\nNA,a\nNone,b\n")
    monkeypatch.setattr(pd, "read_csv", None)
    assert cli.main(["estimate", str(src), "--op", "enrich-people", "--sandbox", "--chunk-rows", "1",
                     "--cache-dir", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "2 invalid" in out


def test_estimate_file_refuses_what_it_cannot_stream(tmp_path, client):
    (tmp_path / "in.csv").write_text("domain\na.example\n")
    with pytest.raises(ValueError, match="no file estimate"):
        estimates.estimate_file(tmp_path / "in.csv", operation="search", client=client)
    with pytest.raises(ValueError, match="chunk_rows"):
        estimates.estimate_file(tmp_path / "in.csv", operation="enrich_orgs", chunk_rows=0, client=client)
    with pytest.raises(TypeError, match="reveal_phone_number"):
        estimates.estimate_file(tmp_path / "in.csv", operation="enrich_orgs", client=client, reveal_phone_number=True)


# -- one credits validator, typed input errors ----------------------------------------------------


@pytest.mark.parametrize("value", [True, -1, float("nan"), "5"])
def test_enrich_parquet_refuses_the_budgets_enrich_people_refuses(value, sandbox, client, tmp_path):
    people_frame(sandbox, 2).to_parquet(tmp_path / "in.parquet")
    with pytest.raises(ValueError, match="max_credits"):
        af.enrich_parquet(tmp_path / "in.parquet", dst=tmp_path / "o.parquet", client=client, max_credits=value)
    with pytest.raises(ValueError, match="max_credits"):
        people_frame(sandbox, 2).apollo.enrich_people(client=client, max_credits=value)
    assert sandbox.count() == 0 and not (tmp_path / "o.parquet").exists()


def test_unreadable_inputs_are_input_errors(tmp_path, client):
    # (a ragged line is no longer unreadable: it comes back as an invalid row naming its line, see test_experience)
    cases = {"bad.csv": b"a,b\n\xff\xfe,2\n", "empty.csv": "", "twice.csv": "a,a\n1,2\n", "x.json": "{}",
             "bad.parquet": "not parquet"}
    for name, text in cases.items():
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(InputError, match=name.split(".")[0]):
            af.enrich_parquet(tmp_path / name, dst=tmp_path / "o.parquet", client=client, progress=False)
        assert not (tmp_path / "o.parquet").exists()


# -- the CLI's exit codes ------------------------------------------------------------------------


def _raises(exc):
    def command(args):
        raise exc
    return command


@pytest.mark.parametrize(
    "exc, code",
    [
        (af.AuthenticationError("no", status_code=401, path="p"), cli.EXIT_AUTH),
        (af.PermissionDeniedError("no", status_code=403, path="p"), cli.EXIT_AUTH),
        (af.RateLimitError("spent", status_code=429, path="p", window="day"), cli.EXIT_RATE_LIMITED),
        (af.ConfigurationError("no key"), cli.EXIT_USAGE),
        (cli.UsageError("--map takes COLUMN=FIELD"), cli.EXIT_USAGE),
        (InputError("in.csv is empty"), cli.EXIT_USAGE),
        (af.FilterError("unknown filter"), cli.EXIT_USAGE),
        (af.ColumnMappingError("no column"), cli.EXIT_USAGE),
        (FileNotFoundError("input file not found"), cli.EXIT_USAGE),
        (af.BudgetExceededError("too much"), cli.EXIT_FAILED),
        (af.ApolloServerError("500", status_code=500, path="p"), cli.EXIT_FAILED),
        (af.APIConnectionError("refused"), cli.EXIT_FAILED),
    ],
)
def test_cli_maps_errors_to_exit_codes(exc, code, capsys):
    assert cli._run(argparse.Namespace(func=_raises(exc))) == code
    assert capsys.readouterr().err == f"error: {exc}\n"


@pytest.mark.parametrize("bug", [TypeError("unsupported operand"), ValueError("bad internal state"), KeyError("x")])
def test_cli_lets_a_bug_show_its_traceback(bug):
    with pytest.raises(type(bug)):
        cli._run(argparse.Namespace(func=_raises(bug)))


@pytest.mark.parametrize(
    "argv",
    [
        ["enrich-people", "in.csv", "o.parquet", "--chunk-rows", "0"],
        ["enrich-people", "in.csv", "o.parquet", "--max-credits", "-1"],
        ["enrich-orgs", "in.csv", "o.parquet", "--max-credits", "nan"],
        ["search-people", "o.parquet", "--max-results", "0"],
        ["push-contacts", "in.csv", "--report", "r.parquet", "--label", " "],
        ["estimate", "in.csv", "--op", "search"],
    ],
)
def test_cli_refuses_bad_arguments_as_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == cli.EXIT_USAGE and "error:" in capsys.readouterr().err


def test_cli_bad_input_file_exits_2(tmp_path, capsys):
    (tmp_path / "in.csv").write_bytes(b"Email,x\n\xffa@b.example,1\n")  # not UTF-8 (a ragged line is a row now)
    # (detected, it reads as cp1252; told it is UTF-8, it cannot be read)
    code = cli.main(["enrich-people", str(tmp_path / "in.csv"), str(tmp_path / "o.parquet"), "--sandbox", "--quiet",
                     "--cache-dir", str(tmp_path / "c"), "--encoding", "utf-8"])
    assert code == cli.EXIT_USAGE and "in.csv" in capsys.readouterr().err


def test_search_output_is_written_atomically(sandbox, tmp_path, monkeypatch, capsys):
    out = tmp_path / "people.parquet"
    out.write_bytes(b"the previous result")

    def broken(self, table, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", broken)
    domain = sandbox.world.orgs[0]["primary_domain"]
    with pytest.raises(OSError, match="disk full"):
        cli.main(["search-people", str(out), "--sandbox", "--quiet", "--cache-dir", str(tmp_path / "c"),
                  "--filter", f"q_organization_domains_list={domain}"])
    assert out.read_bytes() == b"the previous result"  # untouched: never half written
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []
