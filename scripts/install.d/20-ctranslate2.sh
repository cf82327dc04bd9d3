# CTranslate2: a 40 MB wheel, ~2 s to install; runs on this CPU, so the demo uses it too.
# demo: yes
EXTRAS+=(ctranslate2)
