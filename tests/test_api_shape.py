"""The public API has one shape: the frame (or path) first, every other parameter keyword-only, and a parameter
shared by several functions has one annotation and one default wherever it appears."""

from __future__ import annotations

import inspect
from collections import defaultdict

import pandas as pd
import pytest

import apollo_frames as af
import apollo_frames.dask as af_dask
import apollo_frames.polars as af_polars
from apollo_frames.accessor import ApolloAccessor
from apollo_frames.dask import DaskApolloAccessor
from apollo_frames.polars import PolarsApolloNamespace

Kind = inspect.Parameter


def public_functions() -> dict[str, object]:
    """Every function a user calls: the package's exports, the Polars and Dask modules' and the accessors' methods
    (a method's ``self`` stands where its function's frame stands)."""
    found = {}
    for module, names in ((af, af.__all__), (af_polars, af_polars.__all__), (af_dask, af_dask.__all__)):
        for name in names:
            value = getattr(module, name)
            if inspect.isfunction(value):
                found[f"{module.__name__}.{name}"] = value
    for owner in (ApolloAccessor, PolarsApolloNamespace, DaskApolloAccessor):
        for name, value in vars(owner).items():
            if inspect.isfunction(value) and not name.startswith("_"):
                found[f"{owner.__name__}.{name}"] = value
    return found


FUNCTIONS = public_functions()


def test_the_walk_sees_the_whole_api():
    names = {name.rsplit(".", 1)[1] for name in FUNCTIONS}
    assert {"enrich_people", "enrich_orgs", "search_orgs", "search_people", "search_frame", "estimate", "columns",
            "enrich_parquet", "push_parquet", "estimate_file", "report", "collect", "push_contacts"} <= names
    assert len(FUNCTIONS) > 50


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_parameters_after_the_first_are_keyword_only(name):
    params = list(inspect.signature(FUNCTIONS[name]).parameters.values())[1:]
    positional = [p.name for p in params if p.kind not in (Kind.KEYWORD_ONLY, Kind.VAR_KEYWORD)]
    assert positional == [], f"{name}: {positional} may be given by position"


def test_a_shared_parameter_has_one_annotation_and_one_default():
    seen: dict[str, dict[tuple[str, str], list[str]]] = defaultdict(lambda: defaultdict(list))
    for name, function in FUNCTIONS.items():
        for param in list(inspect.signature(function).parameters.values())[1:]:
            if param.kind is Kind.VAR_KEYWORD:
                continue
            seen[param.name][(str(param.annotation), repr(param.default))].append(name)
    shared = {param: shapes for param, shapes in seen.items() if sum(map(len, shapes.values())) > 1}
    assert {"columns", "client", "max_credits", "confirm_over", "progress", "refresh", "operation"} <= set(shared)
    mixed = {param: dict(shapes) for param, shapes in shared.items() if len(shapes) > 1}
    assert mixed == {}


def test_every_operation_that_spends_credits_takes_max_credits_and_confirm_over():
    spenders = ("enrich_people", "enrich_orgs", "search_orgs", "search_frame")
    for name in spenders:
        params = inspect.signature(getattr(af, name)).parameters
        assert {"max_credits", "confirm_over"} <= set(params), name
    assert "max_credits" not in inspect.signature(af.search_people).parameters  # free: nothing to cap


def test_old_positional_calls_are_refused_with_the_keyword_to_use():
    frame = pd.DataFrame({"email": ["a@b.example"]})
    with pytest.raises(TypeError, match="positional"):
        af.estimate(frame, "enrich_people")
    with pytest.raises(TypeError, match="positional"):
        af.columns(frame, "enrich_people")
    with pytest.raises(TypeError, match="positional"):
        af.enrich_parquet("in.parquet", "out.parquet")


@pytest.mark.parametrize("mistake", [
    lambda tmp: af.credit_summary(by="week", client=af.ApolloClient(api_key="k", cache_dir=tmp)),
    lambda tmp: af.estimate(pd.DataFrame({"email": ["a@b.example"]}), operation="enrich_everything"),
    lambda tmp: af.push_contacts(pd.DataFrame({"email": ["a@b.example"]}), mode="merge", dry_run=True),
    lambda tmp: af.enrich_people(pd.DataFrame({"email": ["a@b.example"]}), webhook_url="ftp://x.example"),
])
def test_a_users_mistake_is_an_input_error(tmp_path, mistake):
    """Not a bare ValueError: one exception a program can catch for every bad argument (still a ValueError)."""
    with pytest.raises(af.InputError):
        mistake(tmp_path)
