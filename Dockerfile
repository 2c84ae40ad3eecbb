# syntax=docker/dockerfile:1
# One image for the ws2kafka operator and its bridge pods.
#
#   docker build -t ghcr.io/ws2kafka/ws2kafka:0.1.0 .
#
# The operator runs the default command (`ws2kafka-operator run`); a bridge pod's args start
# with `ws2kafka-operator bridge`. There is no ENTRYPOINT, so a pod's args are the whole command.
# The builder installs the project (a wheel built from the sources) and its dependencies into a
# virtualenv; the final image holds only that virtualenv on the same Python, without pip, and
# runs as the unprivileged user 10001 (the UID the chart and the bridge pods run as).
# tests/integration/test_helm.py installs the project the way this file does and runs the commands.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
# a virtualenv without pip: the base image's pip installs into it
RUN python -m venv --without-pip /opt/ws2kafka
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge bridge
COPY operator operator
COPY devstack devstack
RUN python -m pip --python /opt/ws2kafka/bin/python install .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="ws2kafka" \
      org.opencontainers.image.description="Kubernetes operator that streams WebSocket feeds into Apache Kafka" \
      org.opencontainers.image.licenses="Apache-2.0"
# no package tools at run time; an unprivileged user with a fixed UID for runAsNonRoot
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --system --gid 10001 ws2kafka \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin ws2kafka
COPY --from=builder /opt/ws2kafka /opt/ws2kafka
ENV PATH=/opt/ws2kafka/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 9400 9401
CMD ["ws2kafka-operator", "run"]
