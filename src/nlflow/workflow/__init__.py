"""The Snakemake glue: typed, canonical params for the rules, the experiments table, one function
per rule (``stages``) and the adapter the workflow scripts call. The library never imports it."""
