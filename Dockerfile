# The greenplace operator image: `greenplace operate`, as the Helm chart runs it.
#
#   docker build -t ghcr.io/greenplace/greenplace:0.1.0 .
#
# Without Docker (as the tests do): `bash scripts/build-image.sh` builds this file with buildah
# on a Debian base made locally by debootstrap, and prints the image reference and its archive.
#
# Two stages: the first builds a virtualenv with greenplace and its dependencies, the second
# copies only that venv onto a clean python:3.11-slim, so no compiler or pip cache ships.
# The user is numeric (65532) so Kubernetes can verify runAsNonRoot; the chart runs it with a
# read-only root filesystem, no capabilities and the RuntimeDefault seccomp profile.

# Any Debian-based image with Python 3.11 and venv; scripts/build-image.sh passes a local one.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/greenplace
WORKDIR /src
# The wheel packages operator/greenplace and devcluster (pyproject.toml); nothing else is needed.
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY devcluster ./devcluster
# The finops extra: pyarrow, the operator's FOCUS reader (CSV and Parquet) for --focus-export.
RUN /opt/greenplace/bin/pip install ".[finops]" \
 && /opt/greenplace/bin/python -m compileall -q /opt/greenplace

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="greenplace" \
      org.opencontainers.image.description="Places GPU workloads so that sovereignty, carbon and cost rules hold together" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 65532 greenplace \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin greenplace
COPY --from=build /opt/greenplace /opt/greenplace
ENV PATH=/opt/greenplace/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
# 9443: admission webhook (TLS, certificate mounted by the chart); 8080: kopf liveness.
EXPOSE 9443 8080
ENTRYPOINT ["greenplace"]
CMD ["operate"]
