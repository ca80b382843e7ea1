"""The schedule store's tests again, on the real Redis."""

from tests.unit.test_schedules import *  # noqa: F403
