"""Video embeddings from a trained network (``nlflow features``, ``snakemake features``)."""
