# One image recipe for every service:  docker build --build-arg SERVICE=consent .
# and for the emulator:  docker build --build-arg SERVICE=emulator --build-arg PACKAGE_DIR=emulator .
# and for the audit tool: docker build --build-arg SERVICE=audit --build-arg PACKAGE_DIR=tools/audit .
# Dependencies are synced in two steps (uv's recommended layout), so a source change rebuilds
# only the last layer and the dependency layer stays cached.
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir "uv>=0.5,<1"
ARG SERVICE
ARG PACKAGE_DIR=services/${SERVICE}
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app

# Step 1: third-party dependencies only, from the lock file and the members' manifests.
COPY pyproject.toml uv.lock ./
COPY contracts/pyproject.toml contracts/
COPY libs/bus/pyproject.toml libs/bus/
COPY libs/graph/pyproject.toml libs/graph/
COPY libs/devinfra/pyproject.toml libs/devinfra/
COPY services/portal-api/pyproject.toml services/portal-api/
COPY services/consent/pyproject.toml services/consent/
COPY services/directory-sync/pyproject.toml services/directory-sync/
COPY services/intune-writer/pyproject.toml services/intune-writer/
COPY emulator/pyproject.toml emulator/
COPY tools/audit/pyproject.toml tools/audit/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package "tenantflow-${SERVICE}"

# Step 2: our own packages (contracts, bus, graph, the service or the emulator) and migrations.
COPY contracts contracts
COPY libs/bus libs/bus
COPY libs/graph libs/graph
COPY ${PACKAGE_DIR} ${PACKAGE_DIR}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --package "tenantflow-${SERVICE}"

FROM python:3.11-slim
ARG SERVICE
RUN useradd --system --uid 10001 tenantflow \
    && mkdir -p /state && chown tenantflow /state
COPY --from=build /app /app
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1 TENANTFLOW_SERVICE=${SERVICE}
USER tenantflow
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=6 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4)"]
CMD ["sh", "-c", "exec tenantflow-${TENANTFLOW_SERVICE}"]
