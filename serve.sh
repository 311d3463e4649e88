#!/usr/bin/env bash
# Set up everything on first run, then start EssentiaServer with gunicorn (http://127.0.0.1:5050 by default).
# Configure with ESSENTIA_* variables (see README). SQLite is embedded: no other service is needed.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
.venv/bin/flask --app backend init-db
exec .venv/bin/gunicorn -c gunicorn.conf.py
