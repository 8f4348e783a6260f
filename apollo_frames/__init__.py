"""apollo_frames: enrich pandas DataFrames through the Apollo.io API, batched, cached and credit-aware."""

from ._version import __version__
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ApolloError,
    ApolloServerError,
    AuthenticationError,
    BudgetExceededError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ValidationError,
)
from .http import ApolloClient
from .orgs import enrich_orgs
from .people import enrich_people
from .results import RunSummary
from .credits import Estimate, estimate
from .ledger import credit_summary, ledger, plot_credits
from .filters import FilterError
from .search import SearchTruncatedWarning, search_frame, search_orgs, search_people
from .push import push_accounts, push_contacts
from .batch import enrich_parquet, enrich_partition, push_parquet

__all__ = [
    "__version__",
    "ApolloClient",
    "RunSummary",
    "enrich_orgs",
    "enrich_people",
    "ApolloError",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "ApolloServerError",
    "AuthenticationError",
    "BudgetExceededError",
    "ConfigurationError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ValidationError",
    "Estimate",
    "credit_summary",
    "estimate",
    "ledger",
    "plot_credits",
    "FilterError",
    "SearchTruncatedWarning",
    "search_frame",
    "search_orgs",
    "search_people",
    "push_accounts",
    "push_contacts",
    "enrich_parquet",
    "enrich_partition",
]

from . import accessor as _accessor  # noqa: E402  (registers df.apollo)
