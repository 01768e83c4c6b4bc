#!/bin/sh
# Generate every secret compose.yaml reads, once, into docker/secrets/ (owner-only; never
# committed: docker/secrets/ is ignored). Re-running keeps existing files.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }
keep() { [ -s "secrets/$1" ] || printf '%s' "$2" > "secrets/$1"; }
keep fernet_key "$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')"
keep airflow_database_password "$(random)"
keep core_database_password "$(random)"
keep redis_password "$(random)"
keep api_secret_key "$(random)"
keep jwt_secret "$(random)"
airflow_pw=$(cat secrets/airflow_database_password)
core_pw=$(cat secrets/core_database_password)
redis_pw=$(cat secrets/redis_password)
keep airflow_database_url "postgresql+psycopg://airflow:${airflow_pw}@airflow-db:5432/airflow"
keep airflow_database_async_url "postgresql+psycopg_async://airflow:${airflow_pw}@airflow-db:5432/airflow"
keep result_backend "db+postgresql+psycopg://airflow:${airflow_pw}@airflow-db:5432/airflow"
keep broker_url "redis://:${redis_pw}@redis:6379/0"
keep vardflytt_core_url "postgresql+psycopg://vardflytt:${core_pw}@core-db:5432/core"
keep airflow_passwords.json "{\"admin\": \"$(random)\"}"
echo "secrets in $(pwd)/secrets (the Airflow admin's password: secrets/airflow_passwords.json)"
