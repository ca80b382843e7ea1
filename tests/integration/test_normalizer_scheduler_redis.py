"""The normalizer scheduler's tests again, on the real Redis."""

from tests.unit.test_normalizer_scheduler import *  # noqa: F403
