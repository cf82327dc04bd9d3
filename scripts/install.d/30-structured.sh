# Structured output: llguidance (a ~3 MB wheel), the grammar engine of the in-process engines.
# demo: yes
EXTRAS+=(structured)
