"""The Lua library tests again, on the real Redis: FUNCTION LOAD, FCALL and the script fallback."""

from tests.unit.test_lua_library import *  # noqa: F403  (the same tests, on the real Redis)
