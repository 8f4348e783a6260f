"""Typed errors raised by apollo_frames.

Every message is written to tell the user what to do next. None of them ever
contains the API key: the HTTP client builds them from status, path and
Apollo's own message, never from request headers.
"""

from __future__ import annotations

import os
import sys
import warnings
from types import FrameType


class ApolloError(Exception):
    """Base class for every error this package raises on purpose: one ``except`` catches them all.

    >>> try:
    ...     af.enrich_people(pd.DataFrame({"email": ["mary.wright@sable-health.example"]}), max_credits=-1)
    ... except af.ApolloError as err:
    ...     print(type(err).__name__)
    InputError
    """

    #: a push this error stopped: every row's report so far (a pandas DataFrame: what was pushed, what was not
    #: sent); None for any other error
    partial_result: object = None


class ConfigurationError(ApolloError):
    """A setting is missing or malformed (for example no API key).

    >>> try:
    ...     af.ApolloClient(api_key="my-key", concurrency=0)
    ... except af.ConfigurationError as err:
    ...     print(err)
    concurrency must be an integer from 1 to 64, got 0
    """


class BudgetExceededError(ApolloError):
    """A run would spend more credits than allowed and may not ask to confirm; nothing was sent.

    >>> frame = pd.DataFrame({"email": [f"person{i}@example.com" for i in range(30)]})
    >>> try:
    ...     af.enrich_people(frame, confirm_over=10, progress=False)
    ... except af.BudgetExceededError as err:
    ...     print(str(err).split(",")[0])
    enrich_people may spend up to 30 credits
    """


class StorageError(ApolloError):
    """The answer store or the ledger on disk could not be read or written (disk full, read-only, corrupt).

    ``path`` names the file or folder concerned; ``reason`` is ``"full"``, ``"io"``,
    ``"read_only"``, ``"corrupt"``, ``"busy"`` or ``"failed"``. The message says what to do.
    """

    def __init__(self, message: str, *, path: object = None, reason: str = "failed"):
        super().__init__(message)
        self.path = path
        self.reason = reason


class APIError(ApolloError):
    """A request to Apollo failed: no answer, or an error answer.

    ``path`` is the API path (never a URL with a key), ``attempts`` how many
    times it was sent, and ``outcome_unknown`` is true when the request may
    have reached Apollo, so a write may or may not have happened.
    ``never_sent`` is true when no attempt reached Apollo at all (every
    connection refused, or the run gave it up before sending): nothing was charged.
    ``code`` is Apollo's structured error code when it sent one (``error_details.code``, e.g.
    ``USAGE.RATE_LIMIT.API_RATE_LIMIT_EXCEEDED``; else its older ``error_code``), None otherwise.
    ``charged_attempts``: attempts the server may have run and charged
    without a usable answer (each may have cost the request's worst case).
    """

    code: str | None = None
    charged_attempts: int = 0

    def __init__(self, message: str, *, path: str | None = None, attempts: int = 1, outcome_unknown: bool = False,
                 never_sent: bool = False):
        super().__init__(message)
        self.path = path
        self.attempts = attempts
        self.outcome_unknown = outcome_unknown
        self.never_sent = never_sent


class APIConnectionError(APIError):
    """The request did not get an HTTP answer (connection refused, reset, DNS)."""


class APITimeoutError(APIConnectionError):
    """The request timed out, after all retries."""


class CircuitOpenError(APIConnectionError):
    """Apollo did not answer several requests in a row: the run stopped sending (a circuit breaker)."""


class RequestAbandoned(APIError):
    """The run was interrupted (Ctrl-C) before this request was sent again, or while it waited for the rate limit."""


class APIResponseError(APIError):
    """Apollo answered, but the answer cannot be used: unreadable, too large, or not the documented shape.

    Nothing from such an answer is cached; the rows it was for get ``error``.
    """


class APIStatusError(APIError):
    """Apollo answered with an error status. Subclasses name the common ones.

    ``status_code``, ``path``, Apollo's ``code`` and ``body``; ``headers`` are the answer's (never the request's).
    A run raises the errors no retry or other row can mend (a rejected key); others become the rows' ``error``.

    >>> from apollo_frames.sandbox import Sandbox
    >>> wrong_key = Sandbox().client(api_key="not-my-key", cache_dir=".apollo-example")
    >>> try:
    ...     af.search_people(person_titles=["cto"], client=wrong_key, progress=False)
    ... except af.APIStatusError as err:
    ...     print(type(err).__name__, err.status_code, err.path)
    AuthenticationError 401 mixed_people/api_search
    """

    status_code: int = 0
    path: str  # an answer always has a path

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        path: str,
        body: object = None,
        attempts: int = 1,
        outcome_unknown: bool = False,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ):
        super().__init__(message, path=path, attempts=attempts, outcome_unknown=outcome_unknown)
        self.status_code = status_code
        self.code = code
        self.body = body
        #: the response headers (rate-limit readings); never the request's, so never the key
        self.headers: dict[str, str] = dict(headers or {})


class ValidationError(APIStatusError):
    """400/422: Apollo refused the request as malformed; retrying will not help."""


class AuthenticationError(APIStatusError):
    """401: the key is missing or not accepted."""


class PermissionDeniedError(APIStatusError):
    """403: the key is valid but may not call this endpoint."""


class NotFoundError(APIStatusError):
    """404: unknown path or record."""


class RateLimitError(APIStatusError):
    """429s kept coming for longer than the configured wait cap.

    ``window`` is ``"minute"``, ``"hour"``, ``"day"`` or ``None`` when Apollo did
    not say; ``reset_at`` is a POSIX timestamp of the expected reset, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str,
        window: str | None = None,
        reset_at: float | None = None,
        status_code: int = 429,
        body: object = None,
        attempts: int = 1,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ):
        super().__init__(message, status_code=status_code, path=path, body=body, attempts=attempts, headers=headers,
                         code=code)
        self.window = window
        self.reset_at = reset_at


class ApolloServerError(APIStatusError):
    """5xx (or 408) after all retries."""


class InputError(ApolloError, ValueError):
    """An input cannot be used as given: a file (its format, its header, a malformed line) or an argument's value
    (``max_credits=-1``, ``max_age="soon"``). A ``ValueError`` too.

    >>> try:
    ...     af.enrich_people(pd.DataFrame({"email": ["mary.wright@sable-health.example"]}), max_credits=-1)
    ... except af.InputError as err:
    ...     print(err)
    max_credits must be a finite number of credits >= 0 (or None), got -1
    """


class ColumnMappingError(ApolloError, ValueError):
    """The frame's columns cannot be matched to Apollo fields; the message says how to fix it.

    >>> try:
    ...     af.enrich_people(pd.DataFrame({"colour": ["red"]}), progress=False)
    ... except af.ColumnMappingError as err:
    ...     print(str(err).split(". ")[-1])
    Or name yours explicitly: columns={'your column': 'email'}
    """


class FilterError(ApolloError, ValueError):
    """A search filter name or value that cannot be sent to Apollo as given (Apollo would ignore it and widen the
    search, so it is refused before anything is sent).

    >>> try:
    ...     af.search_people(person_seniorities=["ceo"], progress=False)
    ... except af.FilterError as err:
    ...     print(str(err).split("? ")[0] + "?")
    person_seniorities: 'ceo' is not an Apollo seniority. Did you mean 'senior'?
    """


class SearchTruncatedWarning(UserWarning):
    """Apollo's 50,000-record display cap, or the credit budget, cut a search short."""


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Warn, attributed to the first caller outside this package (the user's cell or script)."""
    package_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package_dir):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM on the command line) during a run, raised once what it received is stored.

    ``saved``: answers stored by this run; ``rows_left``: input rows without an
    answer yet (None when unknown). Running the same call again resumes: the
    saved answers come from the store. A ``KeyboardInterrupt``, so a script stops as on any Ctrl-C.

    >>> print(af.RunInterrupted(saved=40, rows_left=60))
    interrupted: 40 answers saved, 60 rows left; run the same command to resume
    """

    #: what ``saved`` counts, as the line says it (a push: "rows pushed"; a search: "pages saved")
    done_as = "answers saved"

    def __init__(self, saved: int = 0, rows_left: int | None = None):
        super().__init__(saved, rows_left)
        self.saved = saved
        self.rows_left = rows_left

    def __str__(self) -> str:
        return self.line()

    def line(self) -> str:
        left = "all" if self.rows_left is None else f"{self.rows_left:,}"
        return f"interrupted: {self.saved:,} {self.done_as}, {left} rows left; run the same command to resume"


class PushInterrupted(RunInterrupted):
    """Ctrl-C during a push, raised once what was answered is recorded: ``saved`` rows pushed (created, existing
    or updated), ``rows_left`` not yet. The same push again sends only those left."""

    done_as = "rows pushed"


class SearchInterrupted(RunInterrupted):
    """Ctrl-C during a search, raised once the pages received are stored: the same call again reads them from the
    cache (``saved``: pages fetched and stored by this run)."""

    done_as = "pages saved"

    def line(self) -> str:
        return f"interrupted: {self.saved:,} {self.done_as}; run the same command to resume"
