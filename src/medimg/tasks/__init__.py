"""Deep-learning tasks: task specifications, losses, data sampling, training and prediction glue."""
