"""Celery settings kat_scheduler starts from; celeryconfig.py (or CELERY_CONFIG_MODULE) overrides them."""

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
# Flower and the task lifecycle depend on events.
worker_send_task_events = True
task_send_sent_event = True
timezone = "UTC"
enable_utc = True
broker_connection_retry_on_startup = True
# Reconnect to a broker that came back within seconds, not Celery's up to 30 (broker_reconnect.py).
worker_consumer = "kat_scheduler.broker_reconnect:QuickReconnectConsumer"
