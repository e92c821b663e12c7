"""nlflow: non-local I3D video classification, from raw UCF-101 to a deployable network."""

__version__ = "0.1.0"
