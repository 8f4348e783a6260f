"""apollo_frames: enrich pandas DataFrames through the Apollo.io API, batched, cached and credit-aware."""

from apollo_frames._version import __version__
from apollo_frames.client.http import ApolloClient
from apollo_frames.core.errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    ApolloError,
    ApolloServerError,
    AuthenticationError,
    BudgetExceededError,
    CircuitOpenError,
    ColumnMappingError,
    ConfigurationError,
    FilterError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    PushInterrupted,
    RateLimitError,
    RequestAbandoned,
    RunInterrupted,
    SearchInterrupted,
    SearchTruncatedWarning,
    StorageError,
    ValidationError,
)
from apollo_frames.engine.meter import CreditBalance, credit_balance
from apollo_frames.engine.summary import RunSummary
from apollo_frames.estimates import Estimate, estimate, estimate_file
from apollo_frames.io.stream import enrich_parquet, enrich_partition, push_parquet
from apollo_frames.io.tables import read_table
from apollo_frames.ops.mapping import columns
from apollo_frames.ops.orgs import enrich_orgs
from apollo_frames.ops.people import enrich_people
from apollo_frames.ops.push import push_accounts, push_contacts
from apollo_frames.ops.search import search_frame, search_orgs, search_people
from apollo_frames.privacy import Forgotten, forget, suppress, suppressed, unsuppress
from apollo_frames.quickstart import reset, use_client, use_sandbox
from apollo_frames.reports import credit_summary, flat, ledger, plot_credits, report

__all__ = [
    "__version__",
    "ApolloClient",
    "RunSummary",
    "CreditBalance",
    "credit_balance",
    "enrich_orgs",
    "enrich_people",
    "ApolloError",
    "APIError",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "ApolloServerError",
    "AuthenticationError",
    "BudgetExceededError",
    "ConfigurationError",
    "InputError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "StorageError",
    "ValidationError",
    "APIResponseError",
    "CircuitOpenError",
    "RequestAbandoned",
    "RunInterrupted",
    "PushInterrupted",
    "SearchInterrupted",
    "Estimate",
    "credit_summary",
    "estimate",
    "estimate_file",
    "read_table",
    "ledger",
    "plot_credits",
    "flat",
    "report",
    "ColumnMappingError",
    "FilterError",
    "SearchTruncatedWarning",
    "search_frame",
    "search_orgs",
    "search_people",
    "push_accounts",
    "push_contacts",
    "columns",
    "enrich_parquet",
    "enrich_partition",
    "push_parquet",
    "suppress",
    "suppressed",
    "unsuppress",
    "forget",
    "Forgotten",
    "reset",
    "use_client",
    "use_sandbox",
]

from apollo_frames import accessor as _accessor  # noqa: E402, F401  (registers df.apollo)


def _register_installed_namespaces() -> None:
    """``ddf.apollo`` / ``pl.DataFrame.apollo`` when Dask / Polars is already imported (never imported here: slow)."""
    import importlib
    import sys

    for library, ours in (("dask.dataframe", "apollo_frames.dask"), ("polars", "apollo_frames.polars")):
        if library in sys.modules:
            importlib.import_module(ours)


_register_installed_namespaces()
