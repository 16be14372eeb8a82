"""Review guidance that travels with every result: plausibility flags (``plausibility``: a
structure missing, of an implausible volume, in pieces, on the wrong side, outside the body, or in
an impossible order against its neighbours) and where to look first (``uncertainty``: the model's
own uncertainty per structure and slice, ranked into a review list)."""
