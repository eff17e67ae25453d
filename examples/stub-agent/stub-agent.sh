#!/bin/sh
# A stand-in for Claude Code's and Codex's command-line tools, for the examples and the tests:
# called as `claude` it takes what `claude -p --output-format json [--model M]
# [--append-system-prompt S] [--resume ID] PROMPT` takes and prints the one JSON object Claude
# Code prints; called as `codex` it takes `codex exec --json [-m M] [-c model_reasoning_effort=E]
# [resume ID] PROMPT` and prints Codex's JSON events.
#
# What it does comes from the prompt, one instruction per line (other lines are ignored):
#   write FILE: TEXT      write TEXT and a newline to FILE (directories made)
#   append FILE: TEXT     append TEXT and a newline to FILE
#   sleep SECONDS         take that long
#   insert FILE after LINE: TEXT   insert TEXT below the first line equal to LINE in FILE
#   fail: TEXT            end with an error (is_error / turn.failed)
#   then write FILE: TEXT only when resumed to fix a failed verify command (the verify loop) or
#                         to make the changes a stage asked for (a review round)
#   answer: TEXT          end the answer (the result text) with TEXT on a line of its own
#   verdict FILE          end the answer with the first line of FILE, which is taken out of it
#                         (a reviewer answering `changes`, then `pass`: one verdict per line);
#                         nothing when FILE is empty or missing
#
# Environment: STUB_COST dollars per run (default 0.01; Codex reports none), STUB_TOKENS
# input tokens per run (default 1000; output is a quarter of it), STUB_MODEL the model Claude's
# `modelUsage` names (none by default), STUB_LOG a file that gets
# one line per call, STUB_RATE_LIMITS a file holding a count: while it is above 0 each run
# takes one off and ends on a 429 rate limit (Retry-After: 1), STUB_MAX_IN_FLIGHT a number of
# runs at once beyond which a run ends on a 429 at once (a provider's concurrency limit; the
# runs in flight are counted in the file STUB_IN_FLIGHT, under a lock), STUB_STATE where
# sessions are kept (default $TMPDIR).
set -eu

tool=$(basename "$0")
resume=""
system=""
model=""
effort=""
case "$tool" in
  codex)
    [ "${1-}" = exec ] || { echo "stub codex: expected 'exec'" >&2; exit 2; }
    shift
    while [ $# -gt 1 ]; do
      case "$1" in
        --json) ;;
        -m) shift; model=$1 ;;
        -c) shift
          case "$1" in
            model_reasoning_effort=*) effort=${1#*=} ;;
            *) echo "stub codex: unknown setting $1" >&2; exit 2 ;;
          esac ;;
        resume) shift; resume=$1 ;;
        *) echo "stub codex: unknown argument $1" >&2; exit 2 ;;
      esac
      shift
    done
    ;;
  *)
    tool=claude
    while [ $# -gt 1 ]; do
      case "$1" in
        -p|--print) ;;
        --output-format) shift; [ "$1" = json ] || { echo "stub claude: only json" >&2; exit 2; } ;;
        --model) shift; model=$1 ;;
        --append-system-prompt) shift; system=$1 ;;
        --resume) shift; resume=$1 ;;
        *) echo "stub claude: unknown option $1" >&2; exit 2 ;;
      esac
      shift
    done
    ;;
esac
[ $# -eq 1 ] || { echo "stub $tool: expected the prompt as the last argument" >&2; exit 2; }
prompt=$1
state="${STUB_STATE:-${TMPDIR:-/tmp}}/ordo-stub-agent"
mkdir -p "$state"

if [ -n "$resume" ]; then
  # A session remembers every prompt it was given.
  session=$resume
  printf '%s\n' "$prompt" >> "$state/$session"
else
  session="stub-${ORDO_TASK:-task}-${ORDO_ATTEMPT:-1}-$$"
  session=$(printf '%s' "$session" | tr -c 'A-Za-z0-9_.-' '_')
  printf '%s\n' "$prompt" > "$state/$session"
fi
first=$(printf '%s\n' "$prompt" | head -n 1)
if [ -n "${STUB_LOG-}" ]; then
  printf 'tool=%s task=%s model=%s effort=%s resume=%s system=%s prompt=%s\n' \
    "$tool" "${ORDO_TASK-}" "$model" "$effort" "$resume" "$system" "$first" >> "$STUB_LOG"
fi

json_escape() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr '\n\t' '  '; }
cost=${STUB_COST:-0.01}
input=${STUB_TOKENS:-1000}
output=$((input / 4))

finish() { # is_error result
  result=$(json_escape "$2")
  if [ "$tool" = codex ]; then
    printf '{"type":"thread.started","thread_id":"%s"}\n' "$session"
    printf '{"type":"turn.started"}\n'
    if [ "$1" = true ]; then
      printf '{"type":"turn.failed","error":{"message":"%s"}}\n' "$result"
      exit 1
    fi
    printf '{"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":"%s"}}\n' "$result"
    printf '{"type":"turn.completed","usage":{"input_tokens":%s,"cached_input_tokens":0,"output_tokens":%s}}\n' "$input" "$output"
    exit 0
  fi
  subtype=success
  [ "$1" = true ] && subtype=error_during_execution
  models=""
  if [ -n "${STUB_MODEL-}" ]; then
    models=$(printf ',"modelUsage":{"%s":{"inputTokens":%s,"outputTokens":%s,"costUSD":%s}}' \
      "$(json_escape "$STUB_MODEL")" "$input" "$output" "$cost")
  fi
  printf '{"type":"result","subtype":"%s","is_error":%s,"duration_ms":10,"num_turns":1,"result":"%s","session_id":"%s","total_cost_usd":%s,"usage":{"input_tokens":%s,"output_tokens":%s}%s}\n' \
    "$subtype" "$1" "$result" "$session" "$cost" "$input" "$output" "$models"
  [ "$1" = true ] && exit 1
  exit 0
}

rate_limited() {
  cost=0 input=0 output=0
  finish true 'API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":"Rate limited"}} Retry-After: 1'
}

if [ -n "${STUB_MAX_IN_FLIGHT-}" ]; then
  counter=${STUB_IN_FLIGHT:?STUB_IN_FLIGHT names the file counting runs in flight}
  # Adds $1 to the count of runs in flight and prints the new count.
  in_flight() {
    flock "$counter.lock" sh -c 'n=$(cat "$1" 2>/dev/null || true); n=$((${n:-0} + $2)); echo "$n" > "$1"; echo "$n"' \
      sh "$counter" "$1"
  }
  if [ "$(in_flight 1)" -gt "$STUB_MAX_IN_FLIGHT" ]; then
    in_flight -1 > /dev/null
    rate_limited
  fi
  trap 'in_flight -1 > /dev/null' EXIT
fi

if [ -n "${STUB_RATE_LIMITS-}" ] && [ -f "$STUB_RATE_LIMITS" ]; then
  left=$(cat "$STUB_RATE_LIMITS")
  if [ "${left:-0}" -gt 0 ]; then
    echo $((left - 1)) > "$STUB_RATE_LIMITS"
    rate_limited
  fi
fi

# A resumed session asked to resolve merge conflicts (ordo's resolve round) keeps both sides
# of every conflict in the files the prompt lists ("- FILE" lines), removing the markers; with
# STUB_LEAVE_MARKERS=1 it leaves them, as a careless agent would.
if [ -n "$resume" ] && printf '%s' "$prompt" | grep -q 'Resolve each conflict'; then
  resolved=""
  for file in $(printf '%s\n' "$prompt" | sed -n 's/^- //p'); do
    [ -f "$file" ] || continue
    if [ "${STUB_LEAVE_MARKERS-}" != 1 ]; then
      grep -v -e '^<<<<<<< ' -e '^=======$' -e '^>>>>>>> ' "$file" > "$file.resolved" || true
      mv "$file.resolved" "$file"
    fi
    resolved="$resolved $file"
  done
  finish false "stub $tool: resolved${resolved:- nothing}"
fi

# A resumed session asked to fix a failed verify command runs its `then` lines.
instructions=$prompt
if [ -n "$resume" ] && printf '%s' "$prompt" | grep -q -e 'The verify command' -e 'asked for changes' \
  && [ -f "$state/$resume" ]; then
  instructions=$(sed -n 's/^then //p' "$state/$resume")
fi

done_list=""
answer=""
newline='
'
IFS_SAVED=$IFS
IFS=$newline
for line in $instructions; do
  IFS=$IFS_SAVED
  case "$line" in
    "write "*": "*|"append "*": "*)
      verb=${line%% *}
      rest=${line#* }
      file=${rest%%: *}
      text=${rest#*: }
      mkdir -p "$(dirname "$file")"
      if [ "$verb" = write ]; then printf '%s\n' "$text" > "$file"; else printf '%s\n' "$text" >> "$file"; fi
      done_list="$done_list $verb $file;"
      ;;
    "insert "*" after "*": "*)
      rest=${line#insert }
      file=${rest%% after *}
      rest=${rest#* after }
      anchor=${rest%%: *}
      text=${rest#*: }
      awk -v a="$anchor" -v t="$text" '{ print } !done && $0 == a { print t; done = 1 }' \
        "$file" > "$file.new" && mv "$file.new" "$file"
      done_list="$done_list insert $file;"
      ;;
    "answer: "*) answer="$answer$newline${line#answer: }" ;;
    "verdict "*)
      file=${line#verdict }
      if [ -s "$file" ]; then
        answer="$answer$newline$(head -n 1 "$file")"
        tail -n +2 "$file" > "$file.rest" && mv "$file.rest" "$file"
      fi
      ;;
    "sleep "*) sleep "${line#sleep }" ;;
    "fail: "*) finish true "${line#fail: }" ;;
  esac
  IFS=$newline
done
IFS=$IFS_SAVED
finish false "stub $tool:${done_list:- nothing to do}$answer"
