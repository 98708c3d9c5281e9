"""Prediction: a bundle's models applied to studies.

``predictor`` (the stages of one study), ``crop_plan`` (where each crop is cut: pure), ``outputs`` (writing a
study's files and a batch's CSVs), ``batch`` (many studies, resume, errors), ``bundle`` (the models on
disk) and ``engines`` (where a batch's studies run).
"""
