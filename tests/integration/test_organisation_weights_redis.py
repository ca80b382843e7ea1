"""Weighted turns on the real Redis: the unit lane's tests again."""

from tests.unit.test_organisation_weights import *  # noqa: F403
