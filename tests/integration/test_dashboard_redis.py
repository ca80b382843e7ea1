"""The dashboard on the real Redis: the unit lane's tests again."""

from tests.unit.test_dashboard import *  # noqa: F403
