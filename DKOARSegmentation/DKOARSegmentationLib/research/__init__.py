"""Research: from a cohort of contoured CTs to an nnU-Net dataset, a trained model, and two models
compared on the same cases."""
