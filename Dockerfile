# One image for the api, the worker and the one-shot migration; the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY settings_slices.py startup.py worker.py temporal_client.py alembic.ini ./
COPY settings ./settings
COPY domain ./domain
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY db ./db
COPY migrations ./migrations
COPY stack ./stack
COPY recovery ./recovery
COPY relay ./relay
COPY consumers ./consumers
COPY messaging ./messaging
COPY choreography ./choreography
COPY payment_provider ./payment_provider
COPY resilience ./resilience
COPY observability ./observability
COPY history_corpus ./history_corpus
COPY security ./security
COPY audit ./audit
COPY wiring ./wiring
# The sandbox executes workflow modules anew for every workflow run: ship their
# bytecode, which PYTHONDONTWRITEBYTECODE keeps Python from writing at run time.
RUN pip install . && python -m compileall -q workflows && useradd --create-home --uid 10001 saga
USER saga

CMD ["python", "worker.py"]
