#!/usr/bin/env bash
# PM2's load_balancer app (TOPOLOGY=ha): HAProxy, configured from the environment `make up TOPOLOGY=ha` starts it
# with, in the foreground (PM2 supervises it). Two balancers in one process:
#   - the public one, on LB_GATEWAY_HOST:LB_GATEWAY_PORT (the address clients know), over the gateway instances
#     on GATEWAY_PORT + 0 .. HA_INSTANCES-1, each told who the client is by the PROXY protocol;
#   - the gateways' own, on LB_INVENTORY_HOST:LB_INVENTORY_PORT (INVENTORY_URL), over the inventory instances on
#     INVENTORY_PORT + 0 .. HA_INSTANCES-1.
# Each instance is health-checked every second (two failures take it out, two successes bring it back); a
# request whose connection could not be made is sent to another instance, whatever its method; one whose
# instance closed the connection without answering (killed in the middle) is sent again to another only when its
# method may be sent twice. HAProxy's own errors are in the platform's JSON shape; on the public side, a 502 of
# its own (a gateway failed while answering) is a 503, which a client may send again with its Idempotency-Key.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
require_vars LB_GATEWAY_HOST LB_GATEWAY_PORT LB_INVENTORY_HOST LB_INVENTORY_PORT GATEWAY_PORT INVENTORY_PORT \
  HA_INSTANCES GATEWAY_CLIENT_HEADER_TIMEOUT_S

runtime=${GATEWAY_RUNTIME_DIR:-/run/crud-master}
config=$runtime/haproxy-$LB_GATEWAY_PORT.cfg
mkdir -p "$runtime"

# error STATUS CODE MESSAGE REQUEST_ID_FORMAT [HEADER VALUE]: HAProxy's own answer STATUS in the JSON error shape.
# HAProxy closes the client's connection after an answer of its own, and says so (Connection: close): a client
# would otherwise send its next request on a connection already closed, and get no answer at all.
error() {
  printf "    http-error status %s content-type application/json hdr X-Request-ID '%s' hdr Connection close%s lf-string '{\"error\":\"%s\",\"message\":\"%s\",\"request_id\":\"%s\"}'\n" \
    "$1" "$4" "${5:+ hdr $5 $6}" "$2" "$3" "$4"
}

servers() {
  local name=$1 port=$2 options=$3 i
  for ((i = 0; i < HA_INSTANCES; i++)); do
    echo "    server $name-$i 127.0.0.1:$((port + i)) $options"
  done
}

# The client's request id when it is a plain token (as the gateway's front takes it), else HAProxy's own.
request_id='%[var(txn.request_id)]'
request_rules=$(cat <<'RULES'
    http-request set-var(txn.request_id) req.hdr(X-Request-ID) if { req.hdr(X-Request-ID) -m reg ^[A-Za-z0-9._:-]{1,128}$ }
    http-request set-var(txn.request_id) unique-id unless { var(txn.request_id) -m found }
    # Sent again to another instance after a connection closed without an answer: only what may be done twice.
    http-request disable-l7-retry unless METH_GET || METH_HEAD || { method PUT DELETE OPTIONS }
RULES
)

cat >"$config" <<CFG
# Written by scripts/load-balancer.sh at each start of PM2's load_balancer app: edit the settings, not this.
global
    log stdout format raw local0 notice
    # Each connection is two descriptors (client and instance): within the usual limit of 20000 a process has.
    maxconn 8000

defaults
    mode http
    log global
    option dontlognull
    # One line per request that went wrong (at level err, with HAProxy's termination state), none for the others.
    option httplog
    option log-separate-errors
    timeout connect 2s
    # A client's whole request header, as the gateway's front bounds it; then what any answer may take.
    timeout http-request ${GATEWAY_CLIENT_HEADER_TIMEOUT_S}s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 15s
    timeout queue 5s
    timeout check 2s
    retries 2
    option redispatch 1
    # 503: an instance that says it did nothing (a gateway restarting, a dependency away): another may do it.
    retry-on conn-failure empty-response 503
    unique-id-format %{+X}o%ci%cp%fp%Ts%rt%pid
$(error 400 bad_request "the request could not be parsed" "$request_id")
$(error 408 request_timeout "the request was not sent in time" "$request_id")
$(error 502 bad_gateway "an instance failed while answering" "$request_id")
$(error 503 service_unavailable "no instance is up: retry in a second" "$request_id")
$(error 504 gateway_timeout "no instance answered in time" "$request_id")

frontend gateways
    bind $LB_GATEWAY_HOST:$LB_GATEWAY_PORT
$request_rules
    # The whole body first: a client that trickles one never holds a gateway.
    option http-buffer-request
    # One request per client connection. When an instance fails under a request that is not the first of its
    # client's connection, HAProxy closes that connection without any answer and logs nothing (the HTTP way of
    # saying "send it again", which a client may not do with an order): the first request of a connection gets
    # the 503 below.
    option httpclose
    # HAProxy's own 502 (its backend's answer, marked) goes out as a 503; a gateway's own 502 (its inventory
    # unreachable) is passed on as it is.
    http-after-response set-status 503 if { status 502 } { res.hdr(X-Balancer-Error) -m found }
    http-after-response del-header X-Balancer-Error
    http-after-response set-header X-Request-ID $request_id unless { res.hdr(X-Request-ID) -m found }
    default_backend gateway_instances

backend gateway_instances
    # A gateway that failed while answering: whether the request was done is not known, so the client is told to
    # send it again (an order with its Idempotency-Key, which makes a copy harmless): a 503, not a 502. Errors are
    # the backend's where it makes them, hence here.
$(error 502 service_unavailable "a gateway failed while answering: send the request again (an order with the same Idempotency-Key)" "$request_id" X-Balancer-Error 1)
    balance roundrobin
    # A connection to a gateway per request: a client's kept-alive connection is never tied to one that dies.
    option http-server-close
    # Up is answering at all, front and application: not /health, which waits for the gateway's dependencies
    # (a broker without its majority makes it slow on every gateway alike, and would take them all out).
    option httpchk HEAD /openapi.yaml
    http-check expect status 200
$(servers gateway "$GATEWAY_PORT" "check inter 1s fall 2 rise 2 send-proxy-v2 check-send-proxy")

frontend inventories
    bind $LB_INVENTORY_HOST:$LB_INVENTORY_PORT
$request_rules
    default_backend inventory_instances

backend inventory_instances
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
$(servers inventory "$INVENTORY_PORT" "check inter 1s fall 2 rise 2")
CFG

haproxy -c -q -f "$config"
[ -z "${LB_CHECK_ONLY-}" ] || { cat "$config"; exit 0; }
# -W: the master-worker mode PM2 can signal; -db: in the foreground, logging to stdout (PM2's log).
exec haproxy -W -db -f "$config"
