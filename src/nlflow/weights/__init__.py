"""Caffe2 weights of video-nonlocal-net: safe reading, cleaning, name mapping, conversion."""

from nlflow.weights.caffe2_pickle import UnsafePickleError, WeightFileError, read_caffe2_pickle, write_caffe2_pickle
from nlflow.weights.clean import CleanReport, clean_blobs
from nlflow.weights.convert import ConvertError, ConvertReport, convert_caffe2_to_checkpoint, infer_model_config, inspect_weights
from nlflow.weights.name_map import LoadReport, WeightMismatchError, blobs_to_state_dict, state_dict_to_blobs, tensor_names
from nlflow.weights.zoo import ZOO, ZooModel, format_zoo_table, resolve_pretrained, zoo_model

__all__ = [
    "CleanReport",
    "ConvertError",
    "ConvertReport",
    "LoadReport",
    "UnsafePickleError",
    "WeightFileError",
    "WeightMismatchError",
    "ZOO",
    "ZooModel",
    "blobs_to_state_dict",
    "clean_blobs",
    "convert_caffe2_to_checkpoint",
    "format_zoo_table",
    "infer_model_config",
    "inspect_weights",
    "read_caffe2_pickle",
    "resolve_pretrained",
    "state_dict_to_blobs",
    "tensor_names",
    "write_caffe2_pickle",
    "zoo_model",
]
