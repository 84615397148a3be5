#!/bin/sh
# Ray Serve's HAProxy ingress binds its stats page (8404) and Prometheus exporter (9101) on every interface,
# with no setting to change it. Ray runs this in place of haproxy (RAY_SERVE_HAPROXY_BINARY_PATH), after
# writing the config file it passes with -f, for the first start and every reload: bind those listeners to
# 127.0.0.1, and make the admin socket (mode 666 in Ray's template: anyone on the machine could reconfigure
# the ingress) the user's own, then hand over to the real binary (KILN_HAPROXY_BINARY). The HTTP frontend
# already binds serve.host.
set -eu
config=""
previous=""
for arg in "$@"; do
    [ "$previous" = "-f" ] && config="$arg"
    previous="$arg"
done
if [ -n "$config" ] && [ -f "$config" ]; then
    sed -i -E -e 's/^([[:space:]]*bind[[:space:]]+)(\*)?:([0-9]+)/\1127.0.0.1:\3/' \
        -e 's/^([[:space:]]*stats[[:space:]]+socket[[:space:]]+[^[:space:]]+[[:space:]]+mode[[:space:]]+)666/\1600/' \
        "$config"
fi
# Die with the process that started it (the Serve actor): haproxy otherwise outlives a kiln killed hard and
# keeps serve.port, so the next endpoint on that port never answers.
if command -v setpriv >/dev/null 2>&1; then
    exec setpriv --pdeathsig TERM -- "$KILN_HAPROXY_BINARY" "$@"
fi
exec "$KILN_HAPROXY_BINARY" "$@"
