# Ray, for data-parallel replicas (unillm.distributed; sourced by scripts/setup.sh).
# Installed into the main .venv beside the engines: replicas run the same engines.
EXTRAS+=(ray)
