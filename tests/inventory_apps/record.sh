#!/usr/bin/env bash
# Records one inventory evaluation app: starts it in a network namespace of its own (own
# loopback, so nothing else is captured), captures its loopback with dumpcap while
# schemathesis (every method, negative tests, time-bounded) and the scripted users
# (users.py) exercise it, then decodes the capture with the real sensor decoder
# (`apitap-sensor replay`) into the committed fixture.
#
#   record.sh APP FIXTURE_DIR      APP: jsonserver | datasette | httpbin
#
# Needs root (ip netns), dumpcap, and:
#   VENV        python venv with schemathesis faker datasette datasette-graphql httpbin gunicorn
#   NODE_DIR    folder with node_modules/json-server (npm install json-server@0.17.4);
#               jsonserver only
#   SENSOR      the apitap-sensor binary
set -euo pipefail
APP=$1
OUT=$(realpath -m "$2")
HERE=$(cd "$(dirname "$0")" && pwd)
: "${VENV:?}" "${SENSOR:?}"
if [ "$APP" = jsonserver ]; then : "${NODE_DIR:?}"; fi
NS=apitap-inv-$APP
WORK=$(mktemp -d /tmp/inv-rec-XXXX)
mkdir -p "$OUT"
ip netns add "$NS"
cleanup() {
  ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null || true
  sleep 1
  ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
NSX="ip netns exec $NS"
$NSX ip link set lo up

"$VENV/bin/python" "$HERE/gen_data.py" "$WORK/data" --seed 7
case $APP in
  jsonserver)
    PORT=3000; SPEC=$HERE/jsonserver.openapi.json
    cp "$WORK/data/db.json" "$WORK/db.json"
    $NSX "$NODE_DIR/node_modules/.bin/json-server" --host 127.0.0.1 --port $PORT "$WORK/db.json" >"$WORK/app.log" 2>&1 &
    ;;
  datasette)
    PORT=8001; SPEC=$HERE/datasette.openapi.json
    $NSX "$VENV/bin/datasette" serve "$WORK/data/shop.db" -h 127.0.0.1 -p $PORT >"$WORK/app.log" 2>&1 &
    ;;
  httpbin)
    PORT=8080; SPEC=$HERE/../../analyzer/tests/data/httpbin/spec.json
    # httpbin's answers are large (images, echoed requests): half the fuzzing time keeps
    # the fixture near 1 MB.
    MAX_TIME=60
    $NSX "$VENV/bin/python" -m gunicorn -b 127.0.0.1:$PORT -w 2 httpbin:app >"$WORK/app.log" 2>&1 &
    ;;
esac
BASE=http://127.0.0.1:$PORT
for _ in $(seq 50); do
  $NSX "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('$BASE/', timeout=1)" 2>/dev/null && break
  $NSX "$VENV/bin/python" -c "import urllib.request,urllib.error; 
try: urllib.request.urlopen('$BASE/', timeout=1)
except urllib.error.HTTPError: pass" 2>/dev/null && break
  sleep 0.2
done
$NSX dumpcap -q -i lo -f "tcp port $PORT" -w "$WORK/capture.pcapng" >"$WORK/dumpcap.log" 2>&1 &
sleep 2
# Scripted users first (the app's data intact), then the fuzzer, then users again.
if [ "$APP" != httpbin ]; then
  $NSX timeout 300 "$VENV/bin/python" "$HERE/users.py" "$APP" "$BASE" "$WORK/data" --sessions 15 --seed 3
else
  # httpbin's scripted users: every operation of its spec with varied values (the
  # generator of the inventory_eval.rs recordings, fewer repeats).
  $NSX timeout 300 "$VENV/bin/python" "$HERE/../../analyzer/tests/data/httpbin/generate_traffic.py" \
    "$BASE" --spec "$SPEC" --seed 3 --static-repeats 2 --templated-repeats 6 >"$WORK/users.log" 2>&1
fi
# From the work folder: schemathesis keeps an example database (`.schemathesis/`) in the
# current directory, which would replay one recording's failures into the next.
(cd "$WORK" && $NSX timeout 400 "$VENV/bin/schemathesis" run "$SPEC" --url "$BASE" --checks all --mode all \
  --max-examples 12 --max-time "${MAX_TIME:-120}" --request-timeout 5 --seed 1 --workers 1 --no-shrink \
  --suppress-health-check all --continue-on-failure >"$WORK/schemathesis.log" 2>&1) || true
if [ "$APP" != httpbin ]; then
  $NSX timeout 300 "$VENV/bin/python" "$HERE/users.py" "$APP" "$BASE" "$WORK/data" --sessions 10 --seed 4
fi
sleep 2
ip netns pids "$NS" | xargs -r kill -INT 2>/dev/null || true
sleep 2
"$SENSOR" replay "$WORK/capture.pcapng" --events-file "$WORK/events.jsonl" --sensor-id inventory-apps 2>"$WORK/replay.log"
tail -3 "$WORK/replay.log"
gzip -9 -n -c "$WORK/events.jsonl" >"$OUT/events.jsonl.gz"
cp "$SPEC" "$OUT/spec.json"
# httpbin serves none of the generated data: no label truth for it.
if [ "$APP" != httpbin ]; then
  cp "$WORK/data/labels_truth.json" "$OUT/labels_truth.json"
fi
tail -15 "$WORK/schemathesis.log" > "$OUT/schemathesis-summary.txt" || true
echo "$APP: $(wc -l <"$WORK/events.jsonl") events -> $OUT (work $WORK)"
