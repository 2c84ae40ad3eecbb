# syntax=docker/dockerfile:1
# One image for the ws2kafka operator and its bridge pods.
#
#   make image                                   # podman (or docker), base chosen for you
#   docker build -t ghcr.io/ws2kafka/ws2kafka:0.2.0 .
#
# The operator runs the default command (`ws2kafka-operator run`); a bridge pod's args start
# with `ws2kafka-operator bridge`. There is no ENTRYPOINT, so a pod's args are the whole command.
# The builder installs the project (a wheel built from the sources) and its dependencies into a
# virtualenv; the final image holds only that virtualenv on the same Python, without pip, and
# runs as the unprivileged user 10001 (the UID the chart and the bridge pods run as by default).
# The test stack (ws2kafka.devstack) is part of the sources but not of the image.
# tests/integration/test_node.py builds this file and runs the image as pods in a real kubelet.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
# PYTHONSAFEPATH: `python -m pip` in /src must not put /src on sys.path, where the folder
# `operator/` would shadow the standard library's `operator` module.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONSAFEPATH=1
# a virtualenv without pip: the base image's pip installs into it
RUN python -m venv --without-pip /opt/ws2kafka
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge bridge
COPY operator operator
# setuptools builds all three packages of pyproject.toml; of the test stack only its empty
# package goes in (so changing it never invalidates this layer), and out again: the image
# holds the operator and the bridge, not build scripts and test servers.
COPY devstack/__init__.py devstack/
RUN python -P -m pip --python /opt/ws2kafka/bin/python install . \
    && rm -r /opt/ws2kafka/lib/python3*/site-packages/ws2kafka/devstack \
       /opt/ws2kafka/bin/ws2kafka-devstack

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
