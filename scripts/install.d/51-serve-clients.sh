# The serve tests' third-party clients (schemathesis, litellm): main environment, full set-up only.
# demo: no
EXTRAS+=(test-serve-clients)
