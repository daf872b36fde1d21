"""Built-in plugin ``recommender_copy``: rank catalogue items for a shopper, then write copy for them.

Importing this package (or its ``plugin`` module) stays light: torch and transformers are only
imported when the plugin loads its models, so the web process can publish the schemas quickly.
"""
