"""What a prediction leaves for people and programs: the study's result (``result``, what ``result.json``
holds) and its picture (``figure``, ``report.png``), drawn from a result.

The result lives here, below ``inference``, because both the picture and the DICOM outputs are made from
it and ``inference`` writes them: every import points down.
"""
