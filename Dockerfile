# coopgig: migrate, then serve. Build: docker build -t coopgig .   Run: docker run -e DATABASE_URL=... -p 8000:8000 coopgig
FROM python:3.11-slim AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /srv/coopgig
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY app ./app
COPY alembic ./alembic
COPY alembic.ini ./
RUN uv sync --frozen --no-dev

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 coopgig
WORKDIR /srv/coopgig
COPY --from=build --chown=coopgig:coopgig /srv/coopgig /srv/coopgig
ENV PATH="/srv/coopgig/.venv/bin:$PATH" ENVIRONMENT=production PYTHONUNBUFFERED=1
USER coopgig
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status == 200 else 1)"
CMD ["coopgig", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
