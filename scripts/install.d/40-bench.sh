# unillm bench / unillm tune: matplotlib (plots) and optuna (the settings search).
# demo: yes (the README shows unillm bench and tune right after the demo)
EXTRAS+=(bench)
