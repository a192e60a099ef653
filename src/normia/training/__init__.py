"""`normia train`: compose -> validate -> build -> Lightning fit -> MLflow. run.run_training is the one-job entry."""
