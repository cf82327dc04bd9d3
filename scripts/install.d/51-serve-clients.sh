# The serve tests' third-party clients (schemathesis, litellm, langchain-openai): main environment, full set-up only.
# demo: no
EXTRAS+=(test-serve-clients)
