"""Stage 3, models: track encoders (MLP, CRNN, CRNN-TF), bag poolings (MIL, MATT, gated), baselines."""
