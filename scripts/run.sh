#!/usr/bin/env bash
# Starts the web server and the django-q2 cluster together; Ctrl-C stops both.
set -euo pipefail
python="${1:-.venv/bin/python}"
pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT
"$python" manage.py qcluster &
pids+=($!)
"$python" manage.py runserver "${RUN_ADDRESS:-127.0.0.1:8000}" &
pids+=($!)
# Whichever exits first (or Ctrl-C) brings the other down.
wait -n "${pids[@]}"
