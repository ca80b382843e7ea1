# The one image of every kat_scheduler process in docker-compose.yml: beat, scheduler worker, reference
# runner, Flower and the API differ only in their command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so that a code change does not reinstall them.
COPY setup.cfg pyproject.toml README.md ./
RUN python -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); \
print('\n'.join(l for l in c['options']['install_requires'].splitlines() if l and not l.startswith('#')))" \
    > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY kat_scheduler kat_scheduler
COPY celeryconfig.py flowerconfig.py ./
RUN pip install --no-deps . \
    && useradd --create-home --uid 1000 kat

USER kat
EXPOSE 8000 5555
CMD ["kat-scheduler", "--help"]
