"""Pyro models: the generative stories of the tutorial, one module each."""
