#!/usr/bin/env bash
# Checks the secret files compose/compose.yaml needs: each must exist, be a regular file, not be
# empty, and be readable by the containers' users. Says how to fix each one; exit status 1 when
# one is wrong. Run it on the host before the first `up` (compose/setup.sh does): with a missing
# file, Compose v1 refuses to create the containers at all, and nothing in them can explain why.
# Compose also runs it as the one-shot service check-secrets on the files as mounted in the
# containers (`check-secrets.sh /run/secrets`, as user 65534, the user Alertmanager runs as), and
# starts Grafana and Alertmanager only when it succeeds.
#
#   check-secrets.sh [DIR]    DIR defaults to compose/secrets next to this script
set -euo pipefail
dir="${1:-$(cd "$(dirname "$0")" && pwd)/secrets}"
bad=0

# Whether every container user can read PATH: Alertmanager runs as 65534 (nobody), Grafana as
# 472, so a file must be readable by others (a file owned by 65534 with mode 600 is readable by
# Alertmanager but not by Grafana). As 65534 (the check-secrets service), open(2) must also work.
readable_by_containers() {
  local path="$1" mode
  if [ "$(id -u)" -eq 65534 ] && [ ! -r "$path" ]; then
    return 1
  fi
  mode=$(stat -c %a "$path")
  [ $(( 8#$mode & 4 )) -ne 0 ]
}

check() {
  local name="$1" how="$2" path="$dir/$1"
  if [ -d "$path" ]; then
    # Some Compose versions bind-mount a missing source file as a new empty directory.
    echo "missing: compose/secrets/$name is a directory, not a file (Compose makes one when the file is missing; remove it and create the file: $how)" >&2
    bad=1
  elif [ ! -e "$path" ]; then
    echo "missing: compose/secrets/$name  ($how)" >&2
    bad=1
  elif [ ! -f "$path" ]; then
    echo "not a regular file: compose/secrets/$name  ($how)" >&2
    bad=1
  elif ! readable_by_containers "$path"; then
    echo "unreadable: compose/secrets/$name cannot be read by the containers' users (mode $(stat -c %a "$path"), owner $(stat -c %u "$path")); make it readable: chmod 644 compose/secrets/$name" >&2
    bad=1
  elif [ ! -s "$path" ]; then
    echo "empty: compose/secrets/$name  ($how)" >&2
    bad=1
  fi
}
check grafana_admin_password "Grafana's admin password, e.g.: openssl rand -base64 24 > compose/secrets/grafana_admin_password"
check alertmanager_pagerduty_routing_key "PagerDuty Events v2 integration key for critical alerts"
check alertmanager_slack_webhook_url "Slack/Mattermost incoming-webhook URL for warnings and criticals"
check alertmanager_webhook_token "bearer token sent to the default webhook receiver (http://host.docker.internal:5001/webhook)"
check alertmanager_smtp_password "password of the SMTP account that sends alert e-mail (alertmanager/alertmanager.yml, receiver email)"
if [ "$bad" -ne 0 ]; then
  cat >&2 <<MSG

Create them with:  mkdir -p -m 700 compose/secrets && printf '%s' 'VALUE' > compose/secrets/NAME
and make each file readable by the containers' users (chmod 644; the 700 directory keeps other
local users out). compose/setup.sh creates the ones it can generate. A receiver you do not use
still needs a file: put any placeholder in it; its notifications then fail and are logged by
Alertmanager. See docs/stack.md, "Secrets".
MSG
  exit 1
fi
echo "all secret files present and readable in $dir"
