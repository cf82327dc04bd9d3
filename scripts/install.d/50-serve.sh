# unillm serve: FastAPI + uvicorn + prometheus-client (the openai client comes with the test extra).
EXTRAS+=(serve)
