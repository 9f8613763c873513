"""Shared test setup.

* The canonical-form verifier (``exprsearch.lang.canon.VERIFY``) is on for every test, so any
  canonicalisation that leaves a non-fixpoint raises instead of silently producing a bad key.
* Hypothesis runs derandomised (same examples every run), without an example database and
  without deadlines: the suite is deterministic and never fails on a slow, shared machine.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import exprsearch.lang.canon

exprsearch.lang.canon.VERIFY = True  # at import: also covers collection-time work

settings.register_profile(
    "exprsearch", derandomize=True, database=None, deadline=None, print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much])
settings.load_profile("exprsearch")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _verify_canonical_forms():
    """Keep the verifier on for the whole session (a test that turns it off must restore it)."""
    exprsearch.lang.canon.VERIFY = True
    yield
    assert exprsearch.lang.canon.VERIFY is True, "a test left exprsearch.lang.canon.VERIFY switched off"


@pytest.fixture
def verify_off():
    """Temporarily turn the verifier off (only for tests that document a verifier failure)."""
    exprsearch.lang.canon.VERIFY = False
    try:
        yield
    finally:
        exprsearch.lang.canon.VERIFY = True


