# unillm serve: FastAPI + uvicorn (with uvloop and httptools) + prometheus-client (the openai
# client comes with the test extra).
EXTRAS+=(serve)
