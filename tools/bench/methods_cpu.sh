#!/usr/bin/env bash
# tools/bench/methods_cpu.sh: per-step cost of each training method relative to PGD-AT on the
# same model, batch and attack budget (issue #7), CPU. For every Fashion-MNIST method config in
# experiments/, two short runs back to back: the config itself, then the same config with
# train.method = pgd_at (and drsl.weight = 0); both train STEPS steps of the config's batch with
# the config's attack settings, no evaluation. Reports img/s of each and the cost ratio
# (method step time / PGD-AT step time). Run on an otherwise idle machine.
#   usage: tools/bench/methods_cpu.sh [ADVLAB_BINARY] [THREADS] [DATASET]
set -euo pipefail
cd "$(dirname "$0")/../.."
ADVLAB=${1:-build/advlab}
T=${2:-$(nproc)}
DATA=${3:-data/fashion-mnist.h5}
STEPS=${STEPS:-20}
[ -f "$DATA" ] || { echo "methods_cpu.sh: dataset $DATA not found (advlab convert --format fashion-mnist ...)" >&2; exit 2; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
ips() { # metrics.jsonl -> img/s of the (single) epoch
  python3 -c "import json,sys
r=[json.loads(l) for l in open(sys.argv[1])]
print([x for x in r if x['type']=='epoch'][-1]['img_per_s'])" "$1"
}
cfgval() { # config section key: the resolved value (advlab train --print-config is INI)
  "$ADVLAB" train "$1" --print-config | python3 -c "import configparser,sys
c=configparser.ConfigParser(comment_prefixes=(';','#'), inline_comment_prefixes=(';',))
c.read_string(sys.stdin.read()); print(c[sys.argv[1]][sys.argv[2]])" "$2" "$3"
}
run() { # name config extra-sets...
  local name=$1 cfg=$2; shift 2
  local bs
  bs=$(cfgval "$cfg" data batch_size)
  OMP_NUM_THREADS=$T "$ADVLAB" train "$cfg" --set data.dataset="$DATA" --set run.out_dir="$W" \
    --set run.name="$name" --set run.threads="$T" --set train.epochs=1 \
    --set data.n_train=$((bs * STEPS)) --set data.n_test=100 --set eval.attack=none \
    --set train.warmup_epochs=0 "$@" > "$W/$name.log" 2>&1 || { cat "$W/$name.log" >&2; echo nan; return; }
  ips "$W/$name/metrics.jsonl"
}
echo "CPU: $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ //'), $T threads; commit $commit; $(date -u '+%Y-%m-%d %H:%M UTC'); $STEPS steps per run"
echo
echo "| config | method | arch, batch | method img/s | PGD-AT img/s (same arch, batch, attack) | cost vs PGD-AT |"
echo "|---|---|---|---|---|---|"
for cfg in experiments/quickstart/fmnist_smallcnn_pgdat.ini experiments/*/fmnist_*.ini; do
  case $cfg in *standard*|*meansparse*|*_pgdat.ini) [ "$cfg" = experiments/quickstart/fmnist_smallcnn_pgdat.ini ] || continue ;; esac
  method=$(cfgval "$cfg" train method); arch=$(cfgval "$cfg" model arch)
  bs=$(cfgval "$cfg" data batch_size); dw=$(cfgval "$cfg" drsl weight)
  label=$method
  python3 -c "import sys; sys.exit(0 if float('$dw') > 0 else 1)" && label="$method+drsl"
  b=$(basename "$cfg" .ini)
  m_ips=$(run "$b" "$cfg")
  p_ips=$(run "${b}_pgdat" "$cfg" --set train.method=pgd_at --set drsl.weight=0)
  ratio=$(python3 -c "print('%.2fx' % (float('$p_ips') / float('$m_ips')))" 2>/dev/null || echo n/a)
  echo "| ${cfg#experiments/} | $label | $arch, $bs | $m_ips | $p_ips | $ratio |"
done
