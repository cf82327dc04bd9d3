"""The GGUF tensor types the converter writes (kept apart so that listing engines imports
nothing heavy)."""

QUANTIZATION_TYPES: dict[str, str] = {
    # name -> gguf.LlamaFileType member (the same numbers as llama.cpp's llama_ftype)
    "f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16",
    "q8_0": "MOSTLY_Q8_0", "q6_k": "MOSTLY_Q6_K",
    "q5_0": "MOSTLY_Q5_0", "q5_1": "MOSTLY_Q5_1", "q5_k_s": "MOSTLY_Q5_K_S", "q5_k_m": "MOSTLY_Q5_K_M",
    "q4_0": "MOSTLY_Q4_0", "q4_1": "MOSTLY_Q4_1", "q4_k_s": "MOSTLY_Q4_K_S", "q4_k_m": "MOSTLY_Q4_K_M",
    "q3_k_s": "MOSTLY_Q3_K_S", "q3_k_m": "MOSTLY_Q3_K_M", "q3_k_l": "MOSTLY_Q3_K_L",
    "q2_k": "MOSTLY_Q2_K",
}
WRITTEN_DIRECTLY = ("f32", "f16")
"""Types the converter writes itself; the others are quantized from f32 by llama.cpp."""
