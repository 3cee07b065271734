#!/usr/bin/env bash
# A training run of `npm run paper -- --scale small` on the lent GPU machine (issue #25): what travels there, and a
# run cut into 10-minute commands that each stop, checkpointed, before the limit and go on in the next.
#
# Limits it is made for: one command ≤ 10 min; what travels (the checkout's files that git does not ignore, plus
# the carried .device-carry/) ≤ 64 MiB; what comes back ≤ 8 files of ≤ 16 MiB; a machine given back ~30 s after a
# command ends (its disk with it), and held 30 min at most.
#
# Here, in the checkout the GPU machine gets (after `mil data build --out data/corpus`):
#   bash bench/device-bundle.sh                            # .device-carry/bundle.tar.xz (node, dist/, Dawn) + debs
#   bash scripts/device_train.sh pack --corpus data/corpus # .device-carry/corpus.tar.xz, then the 64 MiB check
# The corpus travels as one tar of raw uint16 ids, xz -9e: 20.4 MB for the 25.2M-token corpus (29.1 MB as its gzip
# shards; 3.4 min to pack on 2 busy cores, unpacked there in seconds, every id the same). With the bundle (27.3 MB)
# that is 47.7 MB: the checkout's own files must fit in the 19.4 MB left (`budget` prints it; /work/main's were
# 11.1 MB when this was written, a worktree with golden/models/ 40.3 MB — too many).
#
# There, one device command (carry [".device-carry"], timeout 600), the same again while it prints `stopped`:
#   bash scripts/device_train.sh run teacher train --config teacher-20m --seed 0 --batch 2 --accumulate 4
# and then, with the teacher back in runs/device/teacher (copied there from $OUT/teacher, see below), the draft:
#   bash scripts/device_train.sh run draft train --config draft-20m --teacher runs/device/teacher \
#        --kl-weight 1 --ce-weight 0 --seed 0 --batch 2 --accumulate 4
# (the teacher and draft commands of scripts/commands.ts smallPaperRuns, on this corpus). `run NAME ARGS…` unpacks
# the bundle and the corpus once per machine (kept on its disk between commands), then runs
#   mil ARGS --data .device-carry/corpus --backend webgpu --max-minutes $MAX_MINUTES --max-shard-size 16MiB
#       --quiet --out runs/device/NAME
# MAX_MINUTES (default 8) leaves the rest of the 10 minutes to unpacking, the last checkpoint and the final write.
# mil stops at the first step that ends past it, saves runs/device/NAME.checkpoint (float64 weights and Adam
# moments, 0.45 GB for the teacher: too large to come back, so it stays on the machine's disk, under the ignored
# runs/), exits 0 and this prints `stopped at step S of T`: send the same command again at once, before the machine
# is given back (30 s) — a fresh machine has no checkpoint and starts the run over. Once the run is whole, it prints
# `done` and copies the weights (F16, shards ≤ 16 MiB: 3 for the teacher's 37.8 MB, with their index) and meta.tar
# (config.json, tokenizer.json, training.json; a hybrid's two configs too) to $OUT/NAME/ — 5 files. Unpack meta.tar
# and place them here in runs/paper-small/runs/NAME for
# `npm run paper -- --scale small` (a run whose folder exists is kept).
# Exit status: mil's (0 also when stopped at the time limit; 2 bad usage; 6 no GPU); 1 here when over a limit.
#
# The distillation runs of the small plan (Tables 6–9, the draft, stepwise), several in one command, each evaluated
# there on the GPU and only their records sent back (see `arms` below). The teacher (37.8 MB), the bundle and the
# corpus do not travel together under 64 MiB, so: first `setup` (carry [".device-carry"]: bundle, corpus, Brown as
# brown.jsonl.xz; unpacked on the machine's disk), then at once, on the same machine (carry ["runs/device/teacher"]):
#   bash scripts/device_train.sh arms teacher mamba2-50 mamba2-50-random mamba2-0 …
# Subcommands: pack [--corpus DIR] [--to DIR] · unpack [--from FILE] [--to DIR] · budget [--carry DIR] ·
#              run NAME MIL-ARGS…  (env: MAX_MINUTES, MIL (the mil command; default the bundle's), CORPUS, RUNS) ·
#              setup · arms NAME…  (env: BUDGET_MINUTES, TOKENS, BROWN, EVAL_TOKENS, INSTRUCT, INSTRUCT_EVAL, RETRIEVAL,
#              PASSKEY_EVAL, PASSKEY_TRIALS, MIL, NODE,
#              PLAN_JS, CORPUS, RUNS) · back NAME… ·
#              speculative NAME…  (env: BACKENDS, KS, RUNS_PER, PROMPTS, NEW_TOKENS, NODE, SPEC_JS, CORPUS, RUNS)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LIMIT=$((64 * 1024 * 1024))
CARRY=.device-carry

# the bytes of the files that travel: every file git does not ignore (as the device tool sends them), and shared/
tree_bytes() {
  git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{s += $1} END {print s + 0}'
}
dir_bytes() { [ -d "$1" ] && find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}' || echo 0; }

budget() {
  local carry=${1:-$CARRY} t c
  t=$(tree_bytes)
  c=$(dir_bytes "$carry")
  [ -d shared ] && t=$((t + $(dir_bytes shared)))
  awk -v t="$t" -v c="$c" -v l="$LIMIT" -v d="$carry" 'BEGIN {
    printf "travels: the checkout %.1f MB + %s %.1f MB = %.1f MB of %.1f MB (64 MiB)\n", t / 1e6, d, c / 1e6, (t + c) / 1e6, l / 1e6 }'
  if [ $((t + c)) -gt $LIMIT ]; then
    echo "over the device's 64 MiB by $(((t + c - LIMIT) / 1000)) kB: carry less" >&2
    return 1
  fi
}

# `options WHAT NAMES ARGS…`: each `--NAME VALUE` of ARGS into the caller's variable NAME (one of NAMES); another
# option, or one without its value, exits 2 naming it
options() {
  local what=$1 names=" $2 "
  shift 2
  while [ $# -gt 0 ]; do
    local name=${1#--}
    if [[ $1 != --* || $names != *" $name "* || $# -lt 2 ]]; then
      echo "$what: unknown option or missing value: $1 (options: $names)" >&2
      exit 2
    fi
    printf -v "$name" '%s' "$2"
    shift 2
  done
}

# corpus DIR (mil data build) → TO/corpus.tar.xz: manifest, tokenizer and every shard as raw uint16 ids
pack() {
  local corpus=data/corpus to=$CARRY
  options pack 'corpus to' "$@"
  [ -f "$corpus/manifest.json" ] || { echo "pack: --corpus $corpus: no manifest.json (a corpus of mil data build)" >&2; exit 2; }
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  cp "$corpus/manifest.json" "$tmp/"
  cp "$corpus/$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).tokenizer.file)' "$corpus/manifest.json")" "$tmp/"
  for f in "$corpus"/*.u16.gz; do gzip -dc "$f" >"$tmp/$(basename "$f" .gz)"; done
  mkdir -p "$to"
  # written beside, then renamed: never a truncated corpus.tar.xz
  (cd "$tmp" && XZ_OPT='-9e -T0' tar cJf "$tmp/corpus.tar.xz.part" --sort=name -- *.json *.u16)
  mv "$tmp/corpus.tar.xz.part" "$to/corpus.tar.xz"
  echo "packed $corpus as $to/corpus.tar.xz: $(stat -c %s "$to/corpus.tar.xz") bytes ($(dir_bytes "$corpus") as gzip shards)"
  if [ "$to" = "$CARRY" ]; then budget "$to"; fi
}

# FROM (corpus.tar.xz) → TO: the corpus again, each shard gzip-compressed as mil reads it (the manifest checks the
# ids' sha-256, not the files')
unpack() {
  local from=$CARRY/corpus.tar.xz to=$CARRY/corpus
  options unpack 'from to' "$@"
  local tmp="$to.unpacking"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  tar xJf "$from" -C "$tmp"
  find "$tmp" -name '*.u16' -print0 | xargs -0 -r -n 1 -P "$(nproc)" gzip -1
  rm -rf "$to"
  mv "$tmp" "$to"
}

# the mil command (MIL, else the bundle's, unpacked once per machine), the runs folder, the corpus and the
# instruction sets (INSTRUCT, else .device-carry/instruct), in the caller's variables mil, runs, corpus and instruct
setup() {
  runs=${RUNS:-$ROOT/runs/device}
  corpus=${CORPUS:-$ROOT/$CARRY/corpus}
  if [ -n "${MIL:-}" ]; then
    mil=$MIL
  else
    if [ ! -x /tmp/mil/node ]; then
      mkdir -p /tmp/mil
      tar xJf "$CARRY/bundle.tar.xz" -C /tmp/mil
      for f in "$CARRY"/*.deb; do dpkg -x "$f" /; done
      ldconfig
    fi
    mkdir -p /tmp/mil/bin && cp bin/mil.js /tmp/mil/bin/mil.js # no lib/ beside it there: it runs dist/
    export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
    export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
    mil="/tmp/mil/node /tmp/mil/bin/mil.js"
  fi
  [ -f "$corpus/manifest.json" ] || unpack --to "$corpus"
  instruct=${INSTRUCT:-$ROOT/$CARRY/instruct}
  mkdir -p "$runs"
}

# NAME's model folder to $OUT/NAME: the weights (shards and their index) as they are, and the small files in one
# tar, meta.tar (config.json; a hybrid's mamba_config.json and mil_config.json, without which it loads as a Llama;
# tokenizer.json; training.json) — at most 8 files come back, and a 3-shard hybrid with its 5 small files would be 9.
# Here: `tar xf meta.tar -C DIR && rm DIR/meta.tar`.
back() {
  local out=$runs/$1 to=${OUT:?OUT: the folder whose files come back}/$1 f small=()
  mkdir -p "$to"
  for f in config.json mamba_config.json mil_config.json tokenizer.json training.json; do
    [ ! -f "$out/$f" ] || small+=("$f")
  done
  tar cf "$to/meta.tar" -C "$out" "${small[@]}"
  cp "$out"/*.safetensors* "$to/"
  echo "done: $(ls "$to" | wc -l) files in $to (${small[*]} in meta.tar)"
}

run() {
  local name=${1:?run NAME MIL-ARGS…}
  shift
  local mil runs corpus instruct
  setup
  local out=$runs/$name
  # shellcheck disable=SC2086 # $mil is a command and its script
  $mil "$@" --data "$corpus" --backend webgpu --max-minutes "${MAX_MINUTES:-8}" --max-shard-size 16MiB --quiet \
    --out "$out" | tee "$runs/$name.log"
  if [ -f "$out/config.json" ]; then
    back "$name"
  else
    echo "stopped at $(grep -o 'step [0-9]* of [0-9]*' "$runs/$name.log" | tail -1): send the same command again now"
  fi
}

# `arms NAME…`: the named runs of `npm run paper -- --scale small` (scripts/commands.ts smallPaperRuns, the compiled
# copy in the bundle: its very commands, folders under runs/device, on the carried corpus), in order, in this one
# command. A run already whole is kept; each whole one is then evaluated on the GPU (mil eval --backend webgpu,
# windows of 512, the length the arms distil at): the corpus's test split and, where $BROWN is a file (default
# .device-carry/brown.jsonl, or .xz: the Brown held-out text as JSON lines, for evaluation only, made as
# docs/results/paper-small.md says), its test split by document. A run
# that does not finish inside BUDGET_MINUTES (default 9) of this command's start stops checkpointed and the rest
# wait: send the same command again at once (the machine and its disk are kept ~30 s). At the end every named
# run's record (training.json, the evaluations, the log) goes back as $OUT/records-<first name>.tar.xz, weights not
# (`back NAME…` sends a run's model folder); the teacher must be in runs/device/teacher (carried there).
arms() {
  local mil runs corpus instruct t0=$SECONDS
  setup
  local brown=${BROWN:-$ROOT/$CARRY/brown.jsonl} plan=$runs/plan.tsv
  [ -f "$brown" ] || [ ! -f "$brown.xz" ] || xz -dk "$brown.xz" # it travels xz-compressed (6.2 MB → ~1.5 MB)
  # the SFT/DPO sets (mil data instruct --out data/instruct; here: tar cJf .device-carry/instruct.tar.xz -C data
  # instruct, 19 MB → 2.0 MB), unpacked beside the corpus for the plan's mamba2-50-sft and mamba2-50-dpo
  [ -d "$instruct" ] || [ ! -f "$instruct.tar.xz" ] || tar xJf "$instruct.tar.xz" -C "$(dirname "$instruct")"
  # the retrieval curriculum of the passkey runs (teacher-retrieval, mamba2-*-retrieval): made here from the corpus's
  # first training shard in seconds (mil data retrieval, seed 0; documents of 64–512 tokens, the runs' window), not
  # carried
  local retrieval=${RETRIEVAL:-$ROOT/$CARRY/retrieval}
  if [[ " $* " == *-retrieval* && ! -f $retrieval/retrieval.jsonl ]]; then
    $mil data retrieval --corpus "$corpus" --context 512 --out "$retrieval" || { echo "arms: mil data retrieval failed" >&2; exit 1; }
  fi
  # shellcheck disable=SC2016 # the script is node's
  ${NODE:-/tmp/mil/node} -e 'import(process.argv[1]).then((c) => {
      const runs = c.smallPaperRuns(process.argv[2], process.argv[3], process.argv[4], process.argv[5]);
      console.log("#tokens\t" + c.SMALL_TOKENS); // the budget of a run in the plan, which TOKENS replaces
      for (const [n, r] of Object.entries(runs)) console.log(n + "\t" + r.args.join("\t"));
    })' "${PLAN_JS:-/tmp/mil/dist/scripts/commands.js}" "$runs" "$corpus" "$instruct" "$retrieval" >"$plan"
  local limit=()
  [ -z "${EVAL_TOKENS:-}" ] || limit=(--tokens "$EVAL_TOKENS") # the whole split unless EVAL_TOKENS
  evals() {
    local name=$1 m=$runs/$1
    [ -f "$m.test.json" ] || $mil eval --model "$m" --data "$corpus" --split test --len 512 --backend webgpu \
      "${limit[@]}" --out "$m.test.json" 2>&1 | tee -a "$m.log" || echo "arms: $name: test evaluation failed" | tee -a "$m.log"
    [ ! -f "$brown" ] || [ -f "$m.brown.json" ] || $mil eval --model "$m" --data "$brown" --split test --len 512 \
      --backend webgpu "${limit[@]}" --out "$m.brown.json" 2>&1 | tee -a "$m.log" || echo "arms: $name: Brown evaluation failed" | tee -a "$m.log"
    # stage 2/3 (SFT, DPO) and the model they start from: the instruction set's held-out answers too (its test split
    # by document, never trained on by mil sft, which trains on the train split) — the runs in INSTRUCT_EVAL
    local sft=$instruct/sft.jsonl
    [[ " ${INSTRUCT_EVAL:-teacher teacher-sft mamba2-50 mamba2-50-sft mamba2-50-dpo} " == *" $name "* ]] || return 0
    [ ! -f "$sft" ] || [ -f "$m.instruct.json" ] || $mil eval --model "$m" --data "$sft" --split test --len 256 \
      --backend webgpu "${limit[@]}" --out "$m.instruct.json" 2>&1 | tee -a "$m.log" || echo "arms: $name: instruction evaluation failed" | tee -a "$m.log"
  }
  # the passkey test (issue #25 item 4) of the runs in PASSKEY_EVAL: the teacher and the retrieval runs, at 1, 2, 4
  # and 8 times the training context (1,024), the needle at 5 depths, PASSKEY_TRIALS trials a cell, filler from
  # the corpus's test split; NAME.passkey/passkey.{json,svg}
  passkeys() {
    local name=$1 m=$runs/$1
    [[ " ${PASSKEY_EVAL:-teacher teacher-retrieval mamba2-50-retrieval mamba2-0-retrieval} " == *" $name "* ]] || return 0
    [ -f "$m.passkey/passkey.json" ] || $mil passkey --model "$m" --data "$corpus" --context 1024 --multiples 1,2,4,8 \
      --depths 0,0.25,0.5,0.75,1 --trials "${PASSKEY_TRIALS:-5}" --backend webgpu --out "$m.passkey" 2>&1 |
      tee -a "$m.log" || echo "arms: $name: passkey test failed" | tee -a "$m.log"
  }
  local name
  for name in "$@"; do
    local line
    line=$(awk -F'\t' -v n="$name" '$1 == n' "$plan")
    [ -n "$line" ] || { echo "arms: $name is not a run of the small plan ($(cut -f1 "$plan" | grep -v "^#" | tr '\n' ' '))" >&2; exit 2; }
    if [ ! -f "$runs/$name/config.json" ]; then
      local left
      left=$(awk -v b="${BUDGET_MINUTES:-9}" -v e=$((SECONDS - t0)) 'BEGIN { printf "%.2f", b - e / 60 - 1 }')
      if awk -v l="$left" 'BEGIN { exit !(l < 1) }'; then echo "arms: no time left for $name: send the same command again"; break; fi
      local args
      mapfile -t args < <(printf '%s\n' "$line" | tr '\t' '\n' | tail -n +2)
      # TOKENS: every distillation run of this command at that many tokens instead of the plan's budget (both arms
      # of a comparison the same; training.json records it); a run the plan gives a multiple of it keeps the multiple
      local i base
      base=$(awk -F'\t' '$1 == "#tokens" { print $2 }' "$plan")
      for i in "${!args[@]}"; do
        [ -z "${TOKENS:-}" ] || [ "${args[$i]}" != --tokens ] || args[i + 1]=$((TOKENS * args[i + 1] / ${base:-${args[i + 1]}}))
      done
      echo "arms: $name ($left min left): mil ${args[*]}"
      local s=$SECONDS
      # dpo keeps no checkpoint (one short run: --max-minutes and --max-shard-size are not its options, exit 2)
      local lim=(--max-minutes "$left" --max-shard-size 16MiB)
      [ "${args[0]}" != dpo ] || lim=()
      $mil "${args[@]}" "${lim[@]}" 2>&1 | tee -a "$runs/$name.log" ||
        echo "arms: $name failed: exit $?" | tee -a "$runs/$name.log"
      echo "arms: $name ran $((SECONDS - s)) s" | tee -a "$runs/$name.log"
      if [ ! -f "$runs/$name/config.json" ]; then echo "arms: $name stopped checkpointed: send the same command again"; break; fi
    fi
    evals "$name"
    passkeys "$name"
  done
  local files=()
  for name in "$@"; do
    # a stepwise run's earlier stages (NAME.stageK, lib/io/paths.ts stageOf) send their records too
    for f in "$name/training.json" "$name/config.json" "$name.test.json" "$name.brown.json" "$name.instruct.json" \
      "$name.passkey/passkey.json" "$name.passkey/passkey.svg" "$name.log" \
      $(cd "$runs" && ls -d "$name".stage*/training.json 2>/dev/null); do
      [ -f "$runs/$f" ] && files+=("$f")
    done
  done
  tar cJf "${OUT:?OUT: the folder whose files come back}/records-$1.tar.xz" -C "$runs" "${files[@]}"
  echo "arms: ${#files[@]} files back in records-$1.tar.xz; $((SECONDS - t0)) s in all"
}

# `speculative NAME…`: issue #25 item 5 on the GPU machine, after `arms draft NAME…` made the runs there (whole, on its
# disk): bench/speculative_trained.ts (the bundle's compiled copy) with runs/device/draft as the draft and the named
# runs as its targets, PROMPTS (default 20) prompts of 32 tokens spread over the corpus's test part, RUNS_PER (3)
# runs of each, K in KS (2,4,6,8), 64 new tokens, greedy, on BACKENDS (webgpu); the median and spread of the
# speedup, acceptance and tokens per verify per K, and whether every output equals plain greedy decoding's, in
# $OUT/speculative-trained.{json,md}.
speculative() {
  local mil runs corpus instruct
  setup
  local targets=() n
  for n in draft "$@"; do
    [ -f "$runs/$n/config.json" ] || { echo "speculative: $runs/$n is not a whole run: make it first (arms $n)" >&2; exit 2; }
    [ "$n" = draft ] || targets+=("$n=$runs/$n")
  done
  # shellcheck disable=SC2086 # $NODE may be a command and its options
  ${NODE:-/tmp/mil/node} "${SPEC_JS:-/tmp/mil/dist/bench/speculative_trained.js}" --draft "$runs/draft" \
    --targets "$(IFS=,; echo "${targets[*]}")" --prompts-data "$corpus" --backends "${BACKENDS:-webgpu}" \
    --ks "${KS:-2,4,6,8}" --runs "${RUNS_PER:-3}" --prompts "${PROMPTS:-20}" --tokens "${NEW_TOKENS:-64}" \
    --out "${OUT:?OUT: the folder whose files come back}"
}

cmd=${1:-}
shift || true
case $cmd in
  pack) pack "$@" ;;
  unpack) unpack "$@" ;;
  budget) budget "$@" ;;
  run) run "$@" ;;
  setup) setup && { [ ! -f "$CARRY/brown.jsonl.xz" ] || [ -f "$CARRY/brown.jsonl" ] || xz -dk "$CARRY/brown.jsonl.xz"; } && echo "setup: $mil, corpus $corpus" ;;
  arms) [ $# -gt 0 ] || { echo "arms: name the runs (e.g. arms teacher mamba2-50)" >&2; exit 2; }; arms "$@" ;;
  speculative) [ $# -gt 0 ] || { echo "speculative: name the targets (e.g. speculative mamba2-50 mamba2-0)" >&2; exit 2; }; speculative "$@" ;;
  back) for n in "$@"; do mil='' runs=${RUNS:-$ROOT/runs/device} back "$n"; done ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
