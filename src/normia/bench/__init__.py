"""Benchmarks measured against the hardware's limits (`normia bench kernels|train|scaling`).

Imports only torch, numpy and triton (matplotlib when present), so the same code runs on a bare GPU machine that
lacks lightning, hydra and mlflow.
"""
