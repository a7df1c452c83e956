# syntax=docker/dockerfile:1
# openconnector-operator: the Kopf operator and the aiohttp gateway in one image.
#   docker build -t openconnector-operator:dev .      (or: make image)
# The chart (charts/openconnector-operator) runs it as UID 65532 with a read-only root filesystem; only /tmp
# (an emptyDir) is writable.

# Pinned by tag; pin the digest too (python:3.11.14-slim-trixie@sha256:...) where builds must be bit-for-bit.
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

# ---------------------------------------------------------------------------------------------- builder
# Builds our wheel and a wheel of every dependency, so the final stage installs offline from /wheels and
# needs no build tooling. pyproject.toml pins the direct dependencies; constraints.txt pins every
# transitive one too, so two builds of one commit get the same versions.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY operator/ operator/
RUN pip wheel --wheel-dir /wheels --constraint constraints.txt .

# ---------------------------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}
ARG UID=65532
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# --no-index: only the wheels built above, nothing fetched here. Bytecode is compiled at install time,
# because the root filesystem is read-only at run time. setuptools and wheel are build tools: removed.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/openconnector_operator-*.whl \
    && pip uninstall --yes setuptools wheel \
    && groupadd --system --gid "${UID}" openconnector \
    && useradd --system --uid "${UID}" --gid "${UID}" --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin openconnector
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["openconnector"]
CMD ["run", "--host", "0.0.0.0", "--port", "8080", "--health-port", "8081", "--drain-seconds", "20", "--status-interval", "5"]
