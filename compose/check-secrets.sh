#!/usr/bin/env bash
# Checks that the secret files compose/compose.yaml needs exist and are not empty, and says how to
# create the missing ones. Exit status 1 when one is missing. Run before the first `up`.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/secrets"
missing=0
check() {
  local name="$1" how="$2"
  if [ ! -s "$dir/$name" ]; then
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
