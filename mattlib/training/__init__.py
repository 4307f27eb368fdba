"""Stage 4, training: padded bag batches, the fit loop with validation-only selection, checkpoints."""
