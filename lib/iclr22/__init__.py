"""iclr22: the tested library behind the book of ten ICLR 2022 papers from Amazon.

Chapters import from here; nothing in a chapter re-implements a method. Topic packages
(`graphs`, `timeseries`, `augmentation`, `nlp`, `dataopt`, `limitations`) hold one module per
paper; `runtime`, `cache`, `results`, `data` and `viz` are shared by all of them.
"""

__version__ = "0.1.0"
