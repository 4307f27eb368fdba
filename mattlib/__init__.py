"""mattlib: the MATT study (multiple-instance attention for long-tail music genre classification).

Sub-packages follow the study's data flow, each importing only the ones before it::

    data -> features -> models -> training -> evaluation -> study -> views -> runner

``pipeline`` (``matt study``) and ``cli`` drive every stage; ``paths``, ``locks``, ``provenance``
and ``executors`` are shared infrastructure (project-root paths, one writer per folder, code
digests, local or Ray execution).
"""

__version__ = "0.1.0"
