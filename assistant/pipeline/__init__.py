"""The pipeline: the runtime that runs stages, the bus observers watch, and the wiring.

``runtime.py`` runs stages, ``bus.py`` fans events out to observers, ``assemble.py`` knows which stage follows
which. The stage contract every stage imports is ``assistant/stage.py``, at the bottom of the package.
"""
