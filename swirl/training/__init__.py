"""Stage 2 of SWiRL: the step-wise policy-gradient trainer and its parts."""
