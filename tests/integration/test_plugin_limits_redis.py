"""Plugin limits on the real Redis: the unit lane's tests again."""

from tests.unit.test_plugin_limits import *  # noqa: F403
