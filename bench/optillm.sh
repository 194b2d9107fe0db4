#!/bin/sh
# optillm 0.4.0 (an optimizing inference proxy) in front of llama_cpp.server on the
# same GGUF Ponder serves, as one more row of `ponder bench modes`:
#
#   bench/optillm.sh APPROACH [ponder bench modes options...]
#   bench/optillm.sh re2 --data gsm8k --limit 100 --json bench/results/gsm8k-modes.json
#
# The row is named optillm-APPROACH; with a --json that already holds Ponder's rows,
# the run adds this row on the same items (bench modes resumes per row and item) and
# leaves the others as they are (pass --modes "" to run only this row). optillm needs
# torch, transformers, gradio and more (3.2 GB), so it lives in its own venv, made on
# the first run; it stays out of `make test`. torch is the CPU build: where pip is not
# already set up to find it, pass TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
#
# Approaches that need only an upstream chat endpoint, and so work in front of
# llama_cpp.server: none, re2, cot_reflection, self_consistency, plansearch, leap,
# rto, rstar, z3. bon, moa, mcts and pvg ask for n > 1 answers in one call, which
# llama_cpp.server ignores: they run on one candidate there.
set -eu
APPROACH=${1:?usage: bench/optillm.sh APPROACH [ponder bench modes options...]}
shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${OPTILLM_VENV:-$HOME/.cache/ponder/optillm-venv}
GGUF=${GGUF:-${PONDER_HOME:-$HOME/.local/share/ponder}/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}
THREADS=${PONDER_THREADS:-2}
LOGS=${TMPDIR:-/tmp}/ponder-optillm.$$
mkdir -p "$LOGS"

if [ ! -x "$VENV/bin/optillm" ]; then
    echo "making optillm's venv in $VENV (once; about 3 minutes and 3.2 GB)..."
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --progress-bar on --upgrade pip
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install --progress-bar on ${TORCH_PIP_ARGS:-} torch==2.13.0
    "$VENV/bin/pip" install --progress-bar on torch==2.13.0 optillm==0.4.0
fi
[ -f "$GGUF" ] || { echo "no model at $GGUF: run 'ponder pull qwen2.5-coder-1.5b', or set GGUF" >&2; exit 1; }

free_port() { "$ROOT/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() {  # URL, the process that should answer it, its log
    i=0
    until "$ROOT/.venv/bin/python" -c "import httpx,sys; sys.exit(httpx.get('$1').status_code != 200)" 2>/dev/null; do
        kill -0 "$2" 2>/dev/null || { echo "it exited; its log:" >&2; tail -20 "$3" >&2; exit 1; }
        i=$((i + 1)); [ $i -lt 300 ] || { echo "$1 did not answer in 300 s" >&2; exit 1; }
        sleep 1
    done
}

ENGINE_PORT=$(free_port)
"$ROOT/.venv/bin/python" -m llama_cpp.server --model "$GGUF" --n_threads "$THREADS" --n_threads_batch "$THREADS" \
    --n_ctx 8192 --host 127.0.0.1 --port "$ENGINE_PORT" > "$LOGS/llama_cpp.log" 2>&1 &
ENGINE=$!
trap 'kill $ENGINE ${PROXY:-} 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
wait_for "http://127.0.0.1:$ENGINE_PORT/v1/models" $ENGINE "$LOGS/llama_cpp.log"

PROXY_PORT=$(free_port)
# OPENAI_API_KEY (any value) makes optillm use --base-url; OPTILLM_API_KEY would switch it
# to its own local Hugging Face engine, so it must not be set.
env -u OPTILLM_API_KEY OPENAI_API_KEY=none "$VENV/bin/optillm" --base-url "http://127.0.0.1:$ENGINE_PORT/v1" \
    --host 127.0.0.1 --port "$PROXY_PORT" > "$LOGS/optillm.log" 2>&1 &
PROXY=$!
wait_for "http://127.0.0.1:$PROXY_PORT/health" $PROXY "$LOGS/optillm.log"
echo "llama_cpp.server on :$ENGINE_PORT, optillm ($APPROACH) on :$PROXY_PORT; logs in $LOGS" >&2

"$ROOT/.venv/bin/ponder" bench modes "$@" \
    --against "http://127.0.0.1:$PROXY_PORT/v1" --model "$APPROACH-local" --against-label "optillm-$APPROACH"
