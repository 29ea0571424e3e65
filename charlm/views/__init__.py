"""Views of what a model learned and how it trained: explorer page, heat maps, curves."""
