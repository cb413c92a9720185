"""Quality metrics, one module each: the feature network (featurenet), cached real statistics
(real_stats), domain FID/KID/IS and class coverage (domain), PRDC (prdc), the VAE likelihood
(likelihood), the paper-comparable Inception FID (inception), robustness to blur and noise
(robustness), the real-data floors (floors), and the one `TrialEvaluator` (evaluator). It imports
models and the ground of study/ only; the loop reaches it through the `Evaluator` protocol."""
