"""What follows a study's search, and the launcher that chains them: replicates with fresh seeds, the seed
studies' own protocols, and the pipeline from flags to tables."""

BOTH = "both"  # --family both: study/followups/both.py
