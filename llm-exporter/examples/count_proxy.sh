#!/bin/bash
# Counts a proxy's work for N requests: user-space instructions (valgrind --tool=callgrind) or
# system calls (strace -c -f), for llm-exporter's proxy or for nginx with the bench's settings
# (one worker, no master: all its work in one process). Counts are steady where wall-clock
# figures on a shared machine are not. Run it twice with different N and divide the difference
# by the difference of N: start-up and warm-up cancel out.
#
#   cargo build --release -p llm-exporter --bins --examples
#   llm-exporter/examples/count_proxy.sh callgrind llm stream 1200
#
# usage: count_proxy.sh callgrind|strace|cpu llm|nginx plain|stream|concurrent N [BINDIR]
# BINDIR holds llm-exporter and examples/drive_proxy (default target/release). Prints the
# instruction total (callgrind), strace's table, or (cpu) the proxy's CPU time in microseconds,
# user and kernel together, as the scheduler accounts it (/proc/PID/task/*/schedstat): not steady
# like the counts, but the kernel's share of the work shows only here.
set -u
if [ $# -lt 4 ]; then
    sed -n '2,15p' "$0"
    exit 2
fi
tool=$1 target=$2 kind=$3 n=$4 bindir=${5:-target/release}
upstream=$((20000 + RANDOM % 5000))
proxy=$((upstream + 5000))
work=$(mktemp -d)
case $tool in
    callgrind) run=(valgrind --tool=callgrind "--callgrind-out-file=$work/callgrind.out") ;;
    strace) run=(strace -f -c -o "$work/strace.out") ;;
    cpu) run=() ;;
    *) echo "unknown tool $tool" >&2; exit 2 ;;
esac
case $target in
    llm)
        "${run[@]}" "$bindir/llm-exporter" "--upstream=bench=http://127.0.0.1:$upstream" \
            --upstream.backend=bench=llama.cpp "--proxy=bench=127.0.0.1:$proxy" \
            "--web.listen-address=127.0.0.1:$((proxy + 1))" --log.level=error \
            --proxy.threads=1 >"$work/log" 2>&1 &
        ;;
    nginx)
        mkdir -p "$work/logs"
        cat >"$work/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1;
pid $work/nginx.pid; error_log $work/logs/error.log error;
events { worker_connections 4096; }
http {
    access_log off; client_body_temp_path $work/body; proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fastcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
    upstream model { server 127.0.0.1:$upstream; keepalive 256; }
    server {
        listen 127.0.0.1:$proxy;
        location / {
            proxy_pass http://model; proxy_http_version 1.1; proxy_set_header Connection "";
            proxy_buffering off; proxy_request_buffering off; proxy_read_timeout 600s;
        }
    }
}
EOF
        "${run[@]}" /usr/sbin/nginx -p "$work" -c "$work/nginx.conf" >"$work/log" 2>&1 &
        ;;
    *) echo "unknown target $target" >&2; exit 2 ;;
esac
pid=$!
"$bindir/examples/drive_proxy" "$upstream" "$proxy" "$kind" "$n" >&2 || echo "the load failed" >&2
sleep 0.3
if [ "$tool" = cpu ]; then
    cat /proc/"$pid"/task/*/schedstat | awk '{ns += $1} END {printf "%d\n", ns / 1000}'
    awk '{print "user ticks " $14 ", kernel ticks " $15}' /proc/"$pid"/stat >&2
    cat /proc/"$pid"/task/*/status | awk '/voluntary_ctxt/ {s[$1] += $2} END {for (k in s) print k, s[k]}' >&2
fi
# Under strace the proxy is strace's child; valgrind runs it in its own process.
child=$(pgrep -P "$pid")
kill -TERM "${child:-$pid}"
wait "$pid"
case $tool in
    callgrind) grep -E '^(summary|totals):' "$work/callgrind.out" | head -1 | awk '{print $2}' ;;
    strace) cat "$work/strace.out" ;;
esac
rm -rf "$work"
