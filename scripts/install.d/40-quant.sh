# Quantization libraries for the transformers engine: bitsandbytes (nf4, fp4, int8), GPTQ
# (gptqmodel + optimum) and torchao, resolved with the CPU torch pin (constraints/cpu.txt).
# gptqmodel 7.6.0 pulls pandas/pyarrow and compiles a small CPU packing extension on first use.
EXTRAS+=(bnb gptq torchao)
