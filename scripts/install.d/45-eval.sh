# lm-evaluation-harness for `unillm eval` and its tests (tests/scoring/test_eval.py): lm-eval
# 0.4.13 installs without torch; its datasets/evaluate dependencies resolve with the pins.
# demo: no
EXTRAS+=(eval)
