#!/usr/bin/env bash
# Checks that the secret files compose/compose.yaml needs exist and are not empty, and says how to
# create the missing ones. Exit status 1 when one is missing. Run before the first `up`; compose
# also runs it as the one-shot service check-secrets on the files as mounted in the containers
# (`check-secrets.sh /run/secrets`), and starts Grafana and Alertmanager only when it succeeds.
set -euo pipefail
dir="${1:-$(cd "$(dirname "$0")" && pwd)/secrets}"
missing=0
check() {
  local name="$1" how="$2"
  if [ -d "$dir/$name" ]; then
    # Some Compose versions bind-mount a missing source file as a new empty directory.
    echo "missing: compose/secrets/$name is a directory, not a file (Compose makes one when the file is missing; remove it and create the file: $how)" >&2
    missing=1
  elif [ ! -f "$dir/$name" ] || [ ! -s "$dir/$name" ]; then
    echo "missing: compose/secrets/$name  ($how)" >&2
    missing=1
  fi
}
check grafana_admin_password "Grafana's admin password, e.g.: openssl rand -base64 24 > compose/secrets/grafana_admin_password"
check alertmanager_pagerduty_routing_key "PagerDuty Events v2 integration key for critical alerts"
check alertmanager_slack_webhook_url "Slack/Mattermost incoming-webhook URL for warnings and criticals"
check alertmanager_webhook_token "bearer token sent to the default webhook receiver (http://host.docker.internal:5001/webhook)"
if [ "$missing" -ne 0 ]; then
  cat >&2 <<MSG

Create them with:  mkdir -p -m 700 compose/secrets && printf '%s' 'VALUE' > compose/secrets/NAME
and make each file readable by the containers' users (chmod 644; the 700 directory keeps other
local users out). A receiver you do not use still needs a file: put any placeholder in it; its
notifications then fail and are logged by Alertmanager. See docs/stack.md, "Secrets".
MSG
  exit 1
fi
echo "all secret files present in compose/secrets/"
