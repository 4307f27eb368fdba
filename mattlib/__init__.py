"""mattlib: the MATT study (multiple-instance attention for long-tail music genre classification).

Modules follow the study's data flow: ``fma`` (loaders) -> ``features`` (518 statistics, log-mel)
-> ``bags`` (album-artist bags) -> ``encoders`` + ``mil`` (MATT and other poolings) -> ``train``
-> ``metrics`` -> ``report``; ``grid`` runs the notebooks with papermill, ``widgets`` explores
attention.
"""

__version__ = "0.1.0"
