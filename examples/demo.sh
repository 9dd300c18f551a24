#!/usr/bin/env bash
# The main job: a workflow that pauses at a human gate, is resumed by its run ID
# from another process, is inspected, and is drawn with its status.
#
#   bash examples/demo.sh
#
# Runs go to a fresh temporary database unless WAYPOINT_DB is set; the drawing
# is written to the current directory (approval.svg, or approval.mmd without
# Graphviz). WAYPOINT_CLI overrides the command (default: `waypoint`, or
# `python -m waypoint.cli` when the console script is not installed).
set -euo pipefail

export WAYPOINT_DB="${WAYPOINT_DB:-$(mktemp -d)/demo.db}"
GRAPH="$(dirname "$0")/approval.py:graph"
if [[ -n "${WAYPOINT_CLI:-}" ]]; then
  read -r -a WP <<<"$WAYPOINT_CLI"
elif command -v waypoint >/dev/null 2>&1; then
  WP=(waypoint)
else
  WP=(python -m waypoint.cli)
fi
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

quote() {  # as a user would type it: 'single quotes' around anything unusual
  if [[ "$1" =~ ^[A-Za-z0-9_./:@=+-]+$ ]]; then printf '%s' "$1"
  else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}

step() {  # print the command, then run it
  printf '\n$ waypoint'
  for arg in "$@"; do printf ' '; quote "$arg"; done
  printf '\n'
  "${WP[@]}" "$@"
}

echo "database: $WAYPOINT_DB"

# 1. Start the run: research fans out to two sources, a draft is written, and the
#    run waits at the human gate "approve" with the exact command that resumes it.
step run "$GRAPH" --input '{"topic": "tides"}' | tee "$LOG"
RUN_ID="$(sed -n 's/^run_id: //p' "$LOG" | head -n 1)"
grep -q '^status: waiting' "$LOG" || { echo "expected the run to wait at the gate" >&2; exit 1; }

# 2. Answer the gate from another process, by the run's ID: the run finishes.
step resume "$RUN_ID" --gate approve --input '{"approved": true, "comment": "ship it"}' | tee "$LOG"
grep -q '^status: done' "$LOG" || { echo "expected the run to finish" >&2; exit 1; }

# 3. Inspect it: status, final state, and every step with its delta and the answer.
step show "$RUN_ID"

# 4. Draw it: node status, visit counts and the path taken.
if command -v dot >/dev/null 2>&1; then
  OUT=approval.svg
else
  OUT=approval.mmd
  echo "note: the Graphviz 'dot' binary is missing, so the drawing is Mermaid text" \
       "(apt-get install graphviz or brew install graphviz for SVG)."
fi
step render "$GRAPH" --run "$RUN_ID" -o "$OUT"

echo
echo "done: run $RUN_ID waited at the gate, was resumed by its ID and finished;"
echo "      its drawing is $(pwd)/$OUT and its log is in $WAYPOINT_DB."
