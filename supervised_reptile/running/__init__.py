"""Running the algorithm for real: checkpoints, run identity, stop signals, distribution,
evaluation memory budgets, results files, progress and TensorFlow start-up."""
