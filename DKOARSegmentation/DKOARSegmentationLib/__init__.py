"""DKOARSegmentation core: contour the Danish head-and-neck organs at risk on a planning CT.

This package is pure Python: it never imports slicer, qt or ctk, so that the Slicer module and
the ``dkoar`` command line run the very same code.
"""

__version__ = "0.1.0"
