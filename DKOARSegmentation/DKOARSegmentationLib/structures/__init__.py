"""The organs at risk: the structure catalogue (names, codes, colours), a site's own structure set,
and the mapping of a model's labels onto the catalogue."""
