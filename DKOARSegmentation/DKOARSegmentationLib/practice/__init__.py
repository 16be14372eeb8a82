"""Trainee mode: learn the structures against a reference, border by border.

- ``cards``: the guideline card of each structure (borders, anatomy, pitfalls, volume, tolerance);
- ``borders``: how far an attempt's borders lie beyond or short of the reference's, in patient
  directions;
- ``scoring``: an attempt scored as ``dkoar compare`` scores, with its borders and feedback;
- ``feedback``: the words;
- ``history``: every attempt in an SQLite file (trainees and cases as keyed pseudonyms);
- ``report``: the learning curves and the cohort's hardest structures and borders as one page.
"""
