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
from .filters import FilterError
from .search import SearchTruncatedWarning, search_frame, search_orgs, search_people

__all__ = [
    "__version__",
    "ApolloClient",
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
    "FilterError",
    "SearchTruncatedWarning",
    "search_frame",
    "search_orgs",
    "search_people",
]
