"""Fixtures of the i-dgtl client tests."""

import pytest

from tests.idgtl.scripted_server import ScriptedServer


@pytest.fixture
def server():
    """A real HTTP server on 127.0.0.1 answering from a script (see scripted_server.py)."""
    srv = ScriptedServer()
    yield srv
    srv.stop()
