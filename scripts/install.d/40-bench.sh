# unillm bench / unillm tune: matplotlib (plots) and optuna (the settings search).
# demo: no
EXTRAS+=(bench)
