# unillm serve: FastAPI + uvicorn (with uvloop and httptools) + prometheus-client (the openai
# client comes with the test extra).
# demo: yes (the README shows unillm serve right after the demo)
EXTRAS+=(serve)
