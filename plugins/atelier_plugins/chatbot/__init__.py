"""The built-in customer-service chatbot: retrieval from the project's knowledge base, then a causal LM.

``plugin`` holds the schemas and the plugin class (cheap to import); ``demo`` builds the small
demo model from the shipped demo data.
"""
