"""One line to try the toolkit in a notebook: ``apollo_frames.use_sandbox()``.

It starts the embedded sandbox (an offline stand-in for Apollo, fictional
data, no key, no real credits) and makes a client wired to it the session's
default: every call without ``client=`` uses it, so its rate-limit state and
cache last from cell to cell. ``apollo_frames.reset()`` goes back to a client
built from the environment (``APOLLO_API_KEY``...) for each call.

This is the one module outside the command line that imports the sandbox, and
only when ``use_sandbox()`` is called: ``import apollo_frames`` never loads it.
The layers below never import it.
"""

from __future__ import annotations

from pathlib import Path

from apollo_frames.client.http import ApolloClient, set_default_client


def use_sandbox(cache_dir: str | Path | None = None) -> ApolloClient:
    """Start the embedded sandbox and make it the default client for this session; returns that client.

    ``cache_dir``: where its answers are cached (default: the usual cache folder, in a
    namespace of the sandbox's own, so they never mix with Apollo's).

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> client = af.use_sandbox()
    >>> out = af.enrich_people(pd.DataFrame({"email": ["mary.wright@sable-health.example"]}), progress=False)
    >>> out["apollo_status"].tolist()
    ['matched']
    """
    from apollo_frames.sandbox import Sandbox  # here, not at import: the sandbox is a large module tree

    client = Sandbox().client(cache_dir=None if cache_dir is None else str(cache_dir))
    _close(set_default_client(client))
    return client


def use_client(client: ApolloClient) -> ApolloClient:
    """Make ``client`` the default for this session (e.g. one with your key and plan); returns it.

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> client = af.use_client(af.ApolloClient(api_key="my-key", base_url="http://127.0.0.1:9/api/v1"))
    >>> client.settings.base_url
    'http://127.0.0.1:9/api/v1'
    """
    if not isinstance(client, ApolloClient):
        raise TypeError(f"use_client needs an apollo_frames.ApolloClient, got {type(client).__name__}")
    _close(set_default_client(client), keep=client)
    return client


def reset() -> None:
    """Forget the session's default client (and close it): calls build a client from the environment again.

    Example (``af`` is ``apollo_frames``, after ``af.use_sandbox()``):

    >>> client = af.use_sandbox()   # the session's default client...
    >>> af.reset()                   # ...closed and forgotten: a call without client= builds one from the environment
    """
    _close(set_default_client(None))


def _close(previous: ApolloClient | None, keep: ApolloClient | None = None) -> None:
    """Close the default a call replaced (never ``keep``: ``use_client`` of the current default keeps it open)."""
    if previous is not None and previous is not keep:
        previous.close()
