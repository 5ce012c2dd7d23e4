"""What the baselines share: calibration statistics of the dense model (`activations`), the
layer-by-layer walk of the sequential pruners (`layerwise`), unit budgets (`budget`), candidate
structures scored as pruned models (`candidate`), ADMM reformation (`reformation`), and the
one-level supernet every baseline writes (`single_level`)."""
