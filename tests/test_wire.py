"""Real sockets on loopback: the whole-request deadline covers the headers, proxies never see a loopback request,
an echoed key reaches no log and no kept header, and only a documented success status with JSON is an answer."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

import apollo_frames as af
from apollo_frames.client.deadline import DeadlineBackend, bound_by_deadline
from apollo_frames.core.clock import FakeClock
from apollo_frames.core.errors import APIResponseError, APITimeoutError
from apollo_frames.engine.budget import check_credits
from apollo_frames.sandbox.server import serve

KEY = "wire-key-0123456789-SECRET"


@contextlib.contextmanager
def trickling_server(head: bytes, interval: float, limit: int) -> Iterator[str]:
    """A loopback server answering each connection with ``head`` one byte per ``interval`` s (at most ``limit``
    bytes, then it closes); yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                for i in range(min(limit, len(head))):
                    if stop.wait(interval):
                        return
                    conn.sendall(head[i : i + 1])

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/api/v1"
    finally:
        stop.set()
        listener.close()
        thread.join(5)


def wire_client(tmp_path: Path, base_url: str, **kw: Any) -> af.ApolloClient:
    kw.setdefault("max_retries", 0)
    return af.ApolloClient(api_key=KEY, base_url=base_url, cache_dir=str(tmp_path / "c"), plan="paid", **kw)


def test_a_header_trickle_ends_within_the_timeout(tmp_path):
    head = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 1000
    # 0.05 s a byte for at most 4 s: without the deadline the attempt would last 4 s (each read is quick)
    with trickling_server(head, 0.05, 80) as url, wire_client(tmp_path, url, timeout=1) as client:
        start = time.monotonic()
        with pytest.raises(APITimeoutError):
            client.post("people/bulk_match", json={"details": []})
        elapsed = time.monotonic() - start
    assert elapsed < 1 + 1


def test_the_deadline_covers_proxy_transports_too(tmp_path, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with wire_client(tmp_path, "https://api.example.test/api/v1") as client:
        http = client._client()
        assert bound_by_deadline(http) == 2  # direct, and the proxy's
        assert all(isinstance(t._pool._network_backend, DeadlineBackend)  # type: ignore[union-attr]
                   for t in (http._transport, *http._mounts.values()))


def test_a_loopback_base_url_never_goes_through_a_proxy(tmp_path, monkeypatch):
    proxy = socket.create_server(("127.0.0.1", 0))
    proxy.setblocking(False)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.getsockname()[1]}")
    sandbox = af.sandbox.Sandbox(af.sandbox.SandboxConfig(seed=11, n_orgs=50), clock=FakeClock())
    with sandbox.serve() as url, af.ApolloClient(api_key=af.sandbox.DEFAULT_API_KEY, base_url=url,
                                                 cache_dir=tmp_path / "c", timeout=2, max_retries=0) as client:
        assert client.get("auth/health").status_code == 200
    with pytest.raises(BlockingIOError):
        proxy.accept()  # nobody ever connected to the proxy
    proxy.close()


def echo_app(status: str = "200 OK", body: bytes = b'{"ok": true}'):
    """A WSGI app answering ``status`` and ``body``, echoing the request's key in a response header."""

    def app(environ, start_response):
        start_response(status, [("Content-Type", "application/json"), ("X-Echo", environ.get("HTTP_X_API_KEY", "")),
                                ("Content-Length", str(len(body)))])
        return [body]

    return app


def test_a_key_echoed_in_a_header_reaches_no_log_and_no_kept_header(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    with serve(echo_app()) as url, wire_client(tmp_path, url) as client:
        response = client.post("people/bulk_match", json={"details": []})
    assert response.data == {"ok": True} and response.headers["x-echo"] == "***"
    assert any("receive_response_headers" in r.getMessage() for r in caplog.records)  # httpcore did log
    assert KEY not in caplog.text and KEY not in repr(response)


@pytest.mark.parametrize("status", ["302 Found", "204 No Content", "203 Non-Authoritative Information"])
def test_only_a_success_status_with_json_is_an_answer(tmp_path, status):
    body = json.dumps({"matches": [{"id": "p1", "email": "a@b.example"}], "credits_consumed": 1}).encode()
    with serve(echo_app(status, body)) as url, wire_client(tmp_path, url) as client:
        with pytest.raises(APIResponseError, match="is not an answer") as info:
            client.post("people/bulk_match", json={"details": []})
        assert info.value.charged_attempts == 1  # the server may have run it
        frame = pd.DataFrame({"email": ["a@b.example"]})
        result = frame.apollo.enrich_people(client=client, progress=False)
        assert result["apollo_status"].tolist() == ["error"] and "is not an answer" in result["apollo_error"][0]
        assert client.cache.get_many(client.cache.keys("people/bulk_match", ['{"email":"a@b.example"}'], {})) == {}


def test_a_mock_answer_without_json_is_not_an_answer(tmp_path):
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=b""))
    with af.ApolloClient(api_key=KEY, base_url="https://apollo.test/api/v1", cache_dir=tmp_path, transport=transport,
                         max_retries=0) as client, pytest.raises(APIResponseError, match="not a JSON object"):
        client.post("people/bulk_match", json={})


@pytest.mark.parametrize("value", [np.int64(2), np.float64(2.5), np.int32(0), 2])
def test_max_credits_takes_integer_like_numbers(value):
    assert check_credits("max_credits", value) == float(value)


@pytest.mark.parametrize("value", [np.bool_(True), True, -1, np.int64(-1), float("nan"), np.float64("nan"), "2"])
def test_max_credits_refuses_bools_negatives_nan_and_text(value):
    with pytest.raises(ValueError, match="max_credits"):
        check_credits("max_credits", value)


def test_a_numpy_max_credits_runs(sandbox, tmp_path):
    people = [p["email"] for p in sandbox.world.people if p.get("email")][:5]
    with sandbox.client(cache_dir=tmp_path) as client:
        result = pd.DataFrame({"email": people}).apollo.enrich_people(client=client, progress=False,
                                                                      max_credits=np.int64(2))
    assert (result["apollo_status"] == "matched").sum() == 2 and sandbox.credits_consumed == 2
