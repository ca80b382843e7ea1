"""The boefje scheduler's tests again, on the real Redis."""

from tests.unit.test_boefje_scheduler import *  # noqa: F403
