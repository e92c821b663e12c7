"""Data made here instead of downloaded: the embedded demo dataset in every dataset kind's layout,
its stand-in Caffe2 weights, and UCF-101-shaped data at a fraction of the real size."""
