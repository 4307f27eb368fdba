"""Stage 5, evaluation: track- and bag-level metrics, album bootstrap, paired comparisons, results."""
