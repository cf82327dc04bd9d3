# HTTP engines (openai, tgi): their tests start real servers on loopback — llama-cpp-python's
# own OpenAI-compatible server (llama-cpp-python and the GGUF converter come from the llamacpp
# plugin) and a TGI-protocol stand-in. The engines themselves need only httpx (a core dependency).
EXTRAS+=(test-servers)
