"""The experiment configs, installed with the package as ``mtml.configs`` (see setup.py); read them with
``mtml.config.load_config("toy/toy.yaml")``."""
