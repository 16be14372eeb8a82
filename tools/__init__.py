"""Tools of the house: training and evaluating the demo model, generating lists, tables and the icon."""
