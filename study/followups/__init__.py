"""What follows a study's search: replicates with fresh seeds (replicate_plan, replicate), the picked VAE
trials' importance-weighted NLL (likelihood), and the seed studies' own protocols (reproduce_plan,
reproduce). The launcher that chains them with the search is study/launcher/."""
