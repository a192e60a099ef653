"""normia: config-driven distributed training, Triton kernels and benchmarks for GPU clusters.

Kept import-light on purpose: `normia --help` and `normia.ops` must not pull lightning or mlflow.
"""

__version__ = "0.1.0"
