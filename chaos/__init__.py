"""A fault suite for kat_scheduler: a real deployment on this machine, a steady load, one fault at a time.

    .venv/bin/python -m chaos [--size small|full]

The deployment (deployment.py) is started as subprocesses: a redis-server of its own with AOF on, a
private RabbitMQ virtual host on the machine's broker, the simulated KAT services (services.py), two
beats, three scheduler workers and two reference runners whose handler (runner_handler.py) logs every
start and completion. load.py publishes mutation events at a fixed rate; faults.py injects one fault at a
time; checks.py samples the task records and reads the runners' logs; report.py prints the table.
docs/faults.md describes the suite.
"""
