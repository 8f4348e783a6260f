from __future__ import annotations

import pytest

from apollo_frames.sandbox import Sandbox, SandboxConfig


@pytest.fixture(scope="session")
def small_config() -> SandboxConfig:
    return SandboxConfig(seed=11, n_orgs=300)


@pytest.fixture
def sandbox(small_config) -> Sandbox:
    return Sandbox(small_config)


@pytest.fixture
def client(sandbox, tmp_path):
    with sandbox.client(cache_dir=tmp_path / "cache", retry_backoff=(0.001, 0.01)) as c:
        yield c


@pytest.fixture(autouse=True)
def _no_real_apollo(monkeypatch, tmp_path):
    """No test may reach a real Apollo host or the user's cache: point the defaults somewhere harmless."""
    monkeypatch.setenv("APOLLO_BASE_URL", "http://127.0.0.1:9/api/v1")
    monkeypatch.setenv("APOLLO_FRAMES_CACHE_DIR", str(tmp_path / "default-cache"))
    monkeypatch.delenv("APOLLO_API_KEY", raising=False)
