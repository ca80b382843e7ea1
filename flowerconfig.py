"""Flower's configuration for kat_scheduler: our queue figures on Flower's /metrics.

    celery -A kat_scheduler flower --conf=flowerconfig.py

Flower runs this file (tornado's parse_config_file) in its own process before it serves, and reads
any lower-case name that is a Flower option (port, address, basic_auth, ...); add those below. Flower
reads ./flowerconfig.py by default, so `--conf` may be left out when started from this directory.

Registering the collector makes prometheus_client's default registry, which Flower's /metrics serves,
report kat_scheduler_* series read from the Redis and key prefix of SCHEDULER_REDIS_URL and
SCHEDULER_KEY_PREFIX. Names starting with "_" are not Flower options, so the import does not clash.
"""

from kat_scheduler import metrics as _metrics

_metrics.register()
