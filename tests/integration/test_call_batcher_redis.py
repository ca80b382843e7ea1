"""The call batcher tests again, on the real Redis."""

from tests.unit.test_call_batcher import *  # noqa: F403  (the same tests, on the real Redis)
