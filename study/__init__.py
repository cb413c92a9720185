"""ganvae-study: the study harness (data, metrics, the one training loop, Ray launch, results)."""
