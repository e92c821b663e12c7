"""From a dataset on disk to nlflow's list files: the dataset kinds, their official split files or a
user's folder, the validation hold-out, and the list files every later stage reads."""
