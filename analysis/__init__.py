"""Analysis of finished studies: tidy loading, Pareto fronts, budget curves, tables, plots, report.

Reads only the files a study wrote (trials.parquet, history.parquet, trial artifacts); never
needs Ray. Pure computation (load, pareto, budget, tables, verdict, latent) is separate from
drawing (plots, with the figures' shared look in style) and from the command line (report:
`python -m analysis.report`, whose words and section order are data in captions). Validation
chooses (selection), test describes; quality decides which trials may win a trade-off axis;
stats and tradeoff give every comparison its interval; columns names the derived columns.
"""
