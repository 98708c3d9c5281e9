"""Grading stage: mm-normalised crops around landmarks, timm models, training, ensemble, axial fallback."""
