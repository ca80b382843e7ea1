"""Fixtures shared by every lane. The real services' addresses can be changed with
KAT_TEST_REDIS_URL and KAT_TEST_RABBITMQ_URL."""

pytest_plugins = [
    "tests.factories.redis_fixtures",
    "tests.factories.redis_cluster",
    "tests.factories.rabbitmq_fixtures",
    "tests.factories.kat_world",
]
