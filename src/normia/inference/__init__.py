"""Use a trained model: `normia predict`, `normia export`, `normia.load_run` and `normia.predict`.

- loading.py: a run (checkpoint path or MLflow run id) -> its model, config and prediction state, with the trust
  checks of `normia eval` (a recorded config is untrusted data: allowed `_target_`s only, no resolvers).
- predictors.py: new data (a file, or the same table as a pandas DataFrame) -> predictions as a DataFrame, per task
  kind (forecast, classify, regress, language_model), and the writer that keeps the input's CSV conventions.
- language.py: a byte-level language model's prompts -> continuations (greedy or seeded sampling) and scores.
- pyfunc.py: the MLflow `python_function` model that wraps the same predictors (MLflow's format, not ours).
- predict_cli.py, export_cli.py: the commands.

Kept import-light: nothing heavy is imported by this package's __init__.
"""
