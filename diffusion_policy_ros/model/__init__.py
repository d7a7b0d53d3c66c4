"""Neural parts: normalizer, observation encoders, denoisers."""
