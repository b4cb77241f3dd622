"""Data: labelled RGB images from a data spec (a dataset name, a torchvision folder, an image tree
or its tar, an .npz), decoded once into a cache, as uint8 NCHW tensors with provenance.

    spec.py     where data lives, what a spec names (resolve_source)
    formats.py  the decoders (.npz, image trees, torchvision batches)
    cache.py    the decoded-data cache
    images.py   LabeledImages and the checks every decoder applies
    sources.py  load_split, available_splits, import_source
    augment.py  crop and flip on tensors;  verify.py  `data verify`
"""

from energybench.data.cache import CACHE_FORMAT, cache_dir
from energybench.data.formats import download_torchvision
from energybench.data.images import LabeledImages, check_images, check_labels, in_memory, to_float
from energybench.data.sources import as_split, available_splits, data_identity, import_source, load_split
from energybench.data.spec import (
    CIFAR10_CLASSES, IMAGE_SUFFIXES, KNOWN_SOURCES, SPLITS, TORCHVISION_FOLDERS, Source, data_home,
    energybench_home, resolve_source,
)

__all__ = ["CACHE_FORMAT", "CIFAR10_CLASSES", "IMAGE_SUFFIXES", "KNOWN_SOURCES", "SPLITS", "TORCHVISION_FOLDERS",
           "LabeledImages", "Source", "as_split", "available_splits", "cache_dir", "check_images", "check_labels",
           "data_home", "data_identity", "download_torchvision", "energybench_home", "import_source",
           "in_memory", "load_split", "resolve_source", "to_float"]
