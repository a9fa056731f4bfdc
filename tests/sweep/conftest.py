"""Every test here may start Ray: whatever it leaves running is killed by pid."""

import pytest


@pytest.fixture(autouse=True)
def _cleanup(kill_leftovers):
    yield
