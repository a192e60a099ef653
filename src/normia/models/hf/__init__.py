"""Pretrained Hugging Face models from a local folder (optional extra `normia[hf]`: transformers, peft, safetensors).

Compute nodes have no internet: a checkpoint is downloaded once on a login node (`hf download ... --local-dir DIR`),
then every job reads DIR (`model.path`). Loading forces offline mode and never runs code shipped with a checkpoint
(`trust_remote_code` is never set).

- `classifiers.HFSequenceClassifier`, `HFTokenClassifier`, `HFCausalLM`: Transformers models wrapped with normia's
  `loss(batch) -> (loss, metrics)` protocol; fine-tuning `full`, `frozen` (encoder frozen, head trained) or `lora`
  (peft).
- `llama.PretrainedLlama`: a Hugging Face `LlamaForCausalLM` folder loaded into normia's own `Llama` (normia.ops
  kernels), and `save_llama_as_hf` for the way back.
- `callbacks`: parameter counts in the run summary and MLflow; the trained model (or LoRA adapter) written in
  Hugging Face format to `<output_dir>/hf_model/` and logged to MLflow.
- `checks.check_hf_config`: the refusals (missing folder, no weights, wrong architecture, LoRA modules that match
  nothing) at validation time, before any run or Slurm submission.

Nothing here imports transformers or peft at module level: `import normia.models` stays light.
"""
