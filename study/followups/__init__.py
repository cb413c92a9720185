"""What follows a study's search: replicates with fresh seeds (replicate_plan, replicate_run), the picked
VAE trials' importance-weighted NLL (picked_nll), and the seed studies' own protocols (reproduce_plan,
reproduce_run). The launcher that chains them with the search is study/launcher/."""
