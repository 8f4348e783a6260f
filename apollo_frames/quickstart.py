"""One line to try the toolkit in a notebook: ``apollo_frames.use_sandbox()``.

It starts the embedded sandbox (an offline stand-in for Apollo, fictional
data, no key, no real credits) and makes a client wired to it the session's
default: every call without ``client=`` uses it, so its rate-limit state and
cache last from cell to cell. ``apollo_frames.reset()`` goes back to a client
built from the environment (``APOLLO_API_KEY``...) for each call.

This is the one module outside the command line that imports the sandbox, and only when
``use_sandbox`` is called (``import apollo_frames`` does not load it); the layers below it never do.
"""

from __future__ import annotations

from pathlib import Path

from apollo_frames.client.http import ApolloClient, set_default_client


def use_sandbox(cache_dir: str | Path | None = None) -> ApolloClient:
    """Start the embedded sandbox and make it the default client for this session; returns that client.

    ``cache_dir``: where its answers are cached (default: the usual cache folder, in a
    namespace of the sandbox's own, so they never mix with Apollo's).
    """
    from apollo_frames.sandbox import Sandbox  # (here: a plain import of the package does not load it)

    client = Sandbox().client(cache_dir=None if cache_dir is None else str(cache_dir))
    _close(set_default_client(client))
    return client


def use_client(client: ApolloClient) -> ApolloClient:
    """Make ``client`` the default for this session (e.g. one with your key and plan); returns it."""
    if not isinstance(client, ApolloClient):
        raise TypeError(f"use_client needs an apollo_frames.ApolloClient, got {type(client).__name__}")
    _close(set_default_client(client))
    return client


def reset() -> None:
    """Forget the session's default client (and close it): calls build a client from the environment again."""
    _close(set_default_client(None))


def _close(previous: ApolloClient | None) -> None:
    if previous is not None:
        previous.close()
