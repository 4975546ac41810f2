"""Explanations of model decisions: saliency maps and their sanity checks."""
